import ArgumentParser
import Audit
import Foundation
import Policy
import Recommender
import VeilCore
import Gateway
import Ingestion
import Logging
import Vault

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks of the real code paths (build with -c release first).",
        subcommands: [Audit.self, Ingest.self, Unlearn.self, Scale.self])

    struct Audit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Audit log: durable appends per second with the Merkle tree maintained (concurrent callers), verification time, and a subject query on a large log from the index against a scan."
        )
        @Option(help: "Entries to append per run.") var entries = 200_000
        @Option(help: "Concurrent appenders; several values run in turn, alternating across trials.") var concurrency: [Int] = [64, 128, 256]
        @Option(help: "Runs of each setting; medians are reported.") var trials = 3
        @Option(help: "Also build a log of this many entries and time its verification (0 = skip).") var verifyEntries = 1_000_000
        @Option(help: "Also build a log of this many entries, index it, and time one subject's query from the index and by a scan (0 = skip).")
        var queryEntries = 10_000_000

        func median(_ values: [Double]) -> Double { let s = values.sorted(); return s[s.count / 2] }

        /// Appends `count` entries from `callers` tasks; subjects cycle over `subjects` tokens.
        static func fill(_ log: AuditLog, count: Int, callers: Int, subjects: Int) async throws {
            let perTask = count / callers
            try await withThrowingTaskGroup(of: Void.self) { group in
                for t in 0..<callers {
                    group.addTask {
                        for i in 0..<perTask {
                            let n = t * perTask + i
                            // Interpolation, not String(format:): the callers share the 2 cores with the log.
                            try await log.append(
                                AuditRecord(
                                    actor: "bench-\(t % 16)", role: "app", action: Action.eventsWrite.rawValue, resource: "POST /v1/events",
                                    subjectToken: Self.token((n &* 2_654_435_761) % subjects), purpose: CorePurpose.personalization.rawValue,
                                    outcome: .allowed, reason: "status 200", requestID: "r\(n)"))
                        }
                    }
                }
                try await group.waitForAll()
            }
        }

        static func token(_ subject: Int) -> String { "subject-\(subject)" }

        func run() async throws {
            let dir = NSTemporaryDirectory() + "veil-bench-audit-\(UUID().uuidString.prefix(8))"
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let signer = SigningKeyPair.generate()
            let clock = ContinuousClock()
            let progress = TerminalProgress("bench audit")
            defer { progress.finish("done") }
            var rates: [Int: [Double]] = [:]
            for trial in 1...max(trials, 1) {
                for (n, callers) in concurrency.enumerated() {
                    progress.reporter.advance(
                        "append \(entries) entries", "trial \(trial) of \(max(trials, 1)), \(callers) callers",
                        done: (trial - 1) * concurrency.count + n, total: max(trials, 1) * concurrency.count)
                    let path = dir + "/audit-\(trial)-\(callers).sqlite"
                    let log = try AuditLog(path: path, signer: signer)
                    let n = entries / callers * callers
                    let elapsed = try await clock.measure { try await Self.fill(log, count: n, callers: callers, subjects: 100_000) }
                    let stats = log.stats
                    let heads = try AuditReader(path: path).checkpoints().count
                    rates[callers, default: []].append(Double(n) / elapsed.seconds)
                    print(
                        String(
                            format:
                                "audit append trial %d: %d entries, %d callers, %.2f s, %.0f appends/s (durable: WAL fsynced before each returns; tree maintained, %d signed heads; %.1f entries per commit, %.1f per fsync)",
                            trial, n, callers, elapsed.seconds, Double(n) / elapsed.seconds, heads,
                            Double(stats.entries) / Double(max(stats.batches, 1)), Double(stats.entries) / Double(max(stats.syncs, 1))))
                    try? FileManager.default.removeItem(atPath: path)
                    try? FileManager.default.removeItem(atPath: path + "-wal")
                    try? FileManager.default.removeItem(atPath: path + "-shm")
                }
            }
            for callers in concurrency {
                print(
                    String(format: "audit append median: %d callers, %.0f appends/s over %d trials", callers, median(rates[callers] ?? [0]), trials))
            }
            if verifyEntries > 0 {
                // Built without fsync (the durability of the fixture is not what is measured), a head every 10,000.
                progress.reporter.phase("verify", "build \(verifyEntries) entries")
                let path = dir + "/verify.sqlite"
                let log = try AuditLog(path: path, signer: signer, checkpointInterval: 10_000, checkpointMaxAge: nil, fullSync: false)
                try await Self.fill(log, count: verifyEntries, callers: 100, subjects: 100_000)
                let head = try await log.checkpoint()
                let reader = try AuditReader(path: path)
                progress.reporter.phase("verify", "verify \(max(trials, 1)) times")
                var times: [Double] = []
                var result: AuditVerification?
                for _ in 0..<max(trials, 1) {
                    times.append(
                        try clock.measure { result = try reader.verify(publicKey: signer.publicKey, trustedHeads: head.map { [$0.note] } ?? []) }
                            .seconds)
                }
                print(
                    String(
                        format:
                            "audit verify: %lld entries with their tree, %d signed heads and one trusted head, intact=%@, median %.2f s of %d (%@)",
                        result!.entries, result!.checkpoints, result!.intact ? "yes" : "NO", median(times), times.count,
                        times.map { String(format: "%.2f", $0) }.joined(separator: ", ")))
            }
            if queryEntries > 0 {
                let path = dir + "/query.sqlite"
                let log = try AuditLog(path: path, signer: signer, checkpointInterval: 100_000, checkpointMaxAge: nil, fullSync: false)
                let subjects = max(1, queryEntries / 10)  // ten entries per subject on average
                progress.reporter.phase("query", "build \(queryEntries) entries")
                let built = try await clock.measure { try await Self.fill(log, count: queryEntries, callers: 100, subjects: subjects) }
                let reader = try AuditReader(path: path)
                let index = try AuditIndex(path: dir + "/query-index.sqlite", log: reader)
                progress.reporter.phase("query", "index")
                let indexing = try clock.measure { try index.reindex() }
                var indexed: [Double] = [], scanned: [Double] = []
                var found = 0
                progress.reporter.phase("query", "5 subjects from the index, 2 by a scan")
                for k in 0..<5 {
                    let token = Self.token((k * 7919) % subjects)
                    let q = AuditQuery(subjectToken: token, limit: 1000)
                    var viaIndex: [AuditEntry] = [], viaScan: [AuditEntry] = []
                    indexed.append(try clock.measure { viaIndex = try index.query(q) }.seconds)
                    if k < 2 { scanned.append(try clock.measure { viaScan = try reader.query(q) }.seconds) }
                    if k < 2, viaIndex != viaScan { throw CLIError(message: "the index and the scan disagree for subject query \(k)") }
                    found += viaIndex.count
                }
                print(
                    String(
                        format:
                            "audit query: %d entries (%d subjects, log built in %.0f s, indexed in %.0f s); one subject's entries (%.1f on average): from the index median %.1f ms of 5, by a scan %.2f s (%.0fx)",
                        queryEntries, subjects, built.seconds, indexing.seconds, Double(found) / 5, median(indexed) * 1000, median(scanned),
                        median(scanned) / max(median(indexed), 1e-9)))
            }
        }
    }

    struct Ingest: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Events per second through validate, consent check, tokenize, minimize, seal, audit and commit, in batches.")
        @Option var users = 2000
        @Option var days = 60
        @Option var batch = 500
        @Option(help: "Runs, each on a fresh data directory; the median is reported.") var trials = 3
        @Option(
            help:
                "Batches in flight at once, as from that many clients (the gateway overlaps one batch's parsing with another's commit); several values are measured in turn."
        )
        var streams: [Int] = [1, 2]

        func run() async throws {
            let shop = SampleShop(users: users, items: 1000, days: days, seed: 1)
            let batches = try BenchCommand.batches(of: shop, size: batch)
            var rates: [Int: [Double]] = [:]
            let progress = TerminalProgress("bench ingest")
            defer { progress.finish("done") }
            // Trials of each setting alternate, so a change in the shared host's speed affects them alike.
            for trial in 1...max(trials, 1) {
                for streams in self.streams.map({ max($0, 1) }) {
                    progress.reporter.phase("trial \(trial) of \(max(trials, 1)), \(streams) in flight", "prepare \(users) subjects")
                    let dir = NSTemporaryDirectory() + "veil-bench-ingest-\(UUID().uuidString.prefix(8))"
                    defer { try? FileManager.default.removeItem(atPath: dir) }
                    let service = try BenchCommand.service(in: dir)
                    let app = try await service.benchPrepare(shop: shop)
                    progress.reporter.phase("trial \(trial) of \(max(trials, 1)), \(streams) in flight", "ingest \(batches.count) batches")
                    let clock = ContinuousClock()
                    var accepted = 0
                    let elapsed = try await clock.measure {
                        accepted = try await withThrowingTaskGroup(of: Int.self) { group in
                            for s in 0..<streams {
                                group.addTask {
                                    var n = 0
                                    for b in stride(from: s, to: batches.count, by: streams) {
                                        n += try await service.benchIngest(body: batches[b], principal: app)
                                    }
                                    return n
                                }
                            }
                            return try await group.reduce(0, +)
                        }
                    }
                    let rate = Double(accepted) / elapsed.seconds
                    rates[streams, default: []].append(rate)
                    print(
                        String(
                            format: "ingest trial %d: %d events in %d batches of %d, %d in flight, %.2f s, %.0f events/s (%d users, 7/8 consenting)",
                            trial, accepted, batches.count, batch, streams, elapsed.seconds, rate, users))
                }
            }
            for (streams, r) in rates.sorted(by: { $0.key < $1.key }) {
                print(
                    String(format: "ingest: median %.0f events/s over %d trials, %d batch(es) in flight", r.sorted()[r.count / 2], r.count, streams))
            }
        }
    }
}

extension BenchCommand {
    /// A fresh service over `dir` with generated dev keys and the shipped policies (from the working directory, or
    /// beside the sources), logging errors only.
    static func service(in dir: String, trainingThreads: Int = 2) throws -> VeilService {
        let policies =
            FileManager.default.fileExists(atPath: "./Policies/purposes.yaml")
            ? "./Policies"
            : URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("Policies").path
        let paths = RuntimePaths(dataDirectory: dir + "/data", keysDirectory: dir + "/Keys", policiesDirectory: policies)
        try KeyRing.initialize(directory: paths.keysDirectory)
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        return try VeilService(paths: paths, store: try Backend.open(paths), passphrase: nil, trainingThreads: trainingThreads, logger: logger)
    }

    /// The sample shop's events as `POST /v1/events` bodies of `size` events each.
    static func batches(of shop: SampleShop, size: Int) throws -> [[UInt8]] {
        try stride(from: 0, to: shop.events.count, by: size).map { start in
            Array(try JSONEncoder().encode(["events": Array(shop.events[start..<min(start + size, shop.events.count)])]))
        }
    }
}
