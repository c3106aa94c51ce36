import ArgumentParser
import Audit
import Foundation
import Gateway
import Ingestion
import Logging
import Vault

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks of the real code paths (build with -c release first).",
        subcommands: [Audit.self, Ingest.self])

    struct Audit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Audit appends per second (group commit, concurrent callers) and verification time.")
        @Option(help: "Entries to append.") var entries = 200_000
        @Option(help: "Concurrent appenders; several values run one after the other.") var concurrency: [Int] = [64, 128, 256]
        @Option(help: "Also build a log of this many entries and time its verification (0 = skip).") var verifyEntries = 1_000_000

        func run() async throws {
            let dir = NSTemporaryDirectory() + "veil-bench-audit-\(UUID().uuidString.prefix(8))"
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let signer = SigningKeyPair.generate()
            let clock = ContinuousClock()
            for (run, callers) in concurrency.enumerated() {
                let log = try AuditLog(path: dir + "/audit-\(run).sqlite", signer: signer)
                let perTask = entries / callers
                let elapsed = try await clock.measure {
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for t in 0..<callers {
                            group.addTask {
                                for i in 0..<perTask {
                                    try await log.append(AuditRecord(actor: "bench-\(t)", role: "app", action: "events:write", resource: "POST /v1/events",
                                                                     subjectToken: "t\(t)-\(i)", purpose: "personalization", outcome: .allowed,
                                                                     reason: "status 200", requestID: "r\(t * perTask + i)"))
                                }
                            }
                        }
                        try await group.waitForAll()
                    }
                }
                let n = perTask * callers
                let stats = log.stats
                print(String(format: "audit append: %d entries, %d concurrent callers, %.2f s, %.0f appends/s (durable: WAL fsynced before each returns; %.1f entries per commit, %.1f per fsync)",
                             n, callers, elapsed.seconds, Double(n) / elapsed.seconds, Double(stats.entries) / Double(max(stats.batches, 1)),
                             Double(stats.entries) / Double(max(stats.syncs, 1))))
            }
            guard verifyEntries > 0 else { return }
            let bigLog = try AuditLog(path: dir + "/big.sqlite", signer: signer, checkpointInterval: 10_000)
            try await withThrowingTaskGroup(of: Void.self) { group in
                let per = verifyEntries / 100
                for t in 0..<100 {
                    group.addTask {
                        for i in 0..<per {
                            try await bigLog.append(AuditRecord(actor: "p\(t)", role: "app", action: "events:write", resource: "POST /v1/events",
                                                                subjectToken: "t\(t)-\(i)", outcome: .allowed, reason: "status 200", requestID: "r\(i)"))
                        }
                    }
                }
                try await group.waitForAll()
            }
            try await bigLog.checkpoint()
            let reader = try AuditReader(path: dir + "/big.sqlite")
            var result: AuditVerification?
            let verifyTime = try clock.measure { result = try reader.verify(publicKey: signer.publicKey) }
            print(String(format: "audit verify: %lld entries, %d checkpoints, intact=%@, %.2f s", result!.entries, result!.checkpoints, result!.intact ? "yes" : "NO", verifyTime.seconds))
        }
    }

    struct Ingest: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Events per second through validate, consent check, tokenize, minimize, seal, audit and commit, in batches.")
        @Option var users = 2000
        @Option var days = 60
        @Option var batch = 500
        @Option(help: "Runs, each on a fresh data directory; the median is reported.") var trials = 3
        @Option(help: "Batches in flight at once, as from that many clients (the gateway overlaps one batch's parsing with another's commit); several values are measured in turn.")
        var streams: [Int] = [1, 2]

        func run() async throws {
            let policies = FileManager.default.fileExists(atPath: "./Policies/purposes.yaml") ? "./Policies"
                : URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Policies").path
            let shop = SampleShop(users: users, items: 1000, days: days, seed: 1)
            var encoded: [[UInt8]] = []
            for start in stride(from: 0, to: shop.events.count, by: batch) {
                encoded.append(Array(try JSONEncoder().encode(["events": Array(shop.events[start..<min(start + batch, shop.events.count)])])))
            }
            let batches = encoded
            var rates: [Int: [Double]] = [:]
            // Trials of each setting alternate, so a change in the shared host's speed affects them alike.
            for trial in 1...max(trials, 1) {
                for streams in self.streams.map({ max($0, 1) }) {
                    let dir = NSTemporaryDirectory() + "veil-bench-ingest-\(UUID().uuidString.prefix(8))"
                    defer { try? FileManager.default.removeItem(atPath: dir) }
                    let paths = RuntimePaths(dataDirectory: dir + "/data", keysDirectory: dir + "/Keys", policiesDirectory: policies)
                    try KeyRing.initialize(directory: paths.keysDirectory)
                    var logger = Logger(label: "bench")
                    logger.logLevel = .error
                    let service = try VeilService(paths: paths, passphrase: nil, logger: logger)
                    let app = try await service.benchPrepare(shop: shop)
                    let clock = ContinuousClock()
                    var accepted = 0
                    let elapsed = try await clock.measure {
                        accepted = try await withThrowingTaskGroup(of: Int.self) { group in
                            for s in 0..<streams {
                                group.addTask {
                                    var n = 0
                                    for b in stride(from: s, to: batches.count, by: streams) { n += try await service.benchIngest(body: batches[b], principal: app) }
                                    return n
                                }
                            }
                            return try await group.reduce(0, +)
                        }
                    }
                    let rate = Double(accepted) / elapsed.seconds
                    rates[streams, default: []].append(rate)
                    print(String(format: "ingest trial %d: %d events in %d batches of %d, %d in flight, %.2f s, %.0f events/s (%d users, 7/8 consenting)",
                                 trial, accepted, batches.count, batch, streams, elapsed.seconds, rate, users))
                }
            }
            for (streams, r) in rates.sorted(by: { $0.key < $1.key }) {
                print(String(format: "ingest: median %.0f events/s over %d trials, %d batch(es) in flight", r.sorted()[r.count / 2], r.count, streams))
            }
        }
    }
}
