import ArgumentParser
import Audit
import Foundation
import Persistence
import Policy
import VeilCore
import Gateway
import Storage
import SQLiteStorage
import Vault
#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Verify, query, prove and export the audit log; witness a remote one.",
        subcommands: [Verify.self, Query.self, Reindex.self, Export.self, Checkpoint.self, Key.self, Prove.self, Consistency.self, Witness.self])

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Check every entry, the Merkle tree and every signed head; with --trusted-head, that the log still matches heads kept elsewhere. Exit 1 naming the first bad entry."
        )
        @OptionGroup var common: CommonOptions
        @Option(help: "Ed25519 public key file (hex); default: <keys>/audit.pub.") var pubkey: String?
        @Option(
            name: .customLong("trusted-head"),
            help: "A signed head kept outside the gateway (`veil audit checkpoint` output, or a witness's heads/ directory); repeatable.")
        var trustedHeads: [String] = []
        @Option(
            name: .customLong("verifier-key"),
            help: "File holding the verifier key the trusted heads were signed with (`veil audit key`); default: the audit key.")
        var verifierKey: String?

        func run() async throws {
            let key = try readAuditPublicKey(pubkey, common)
            let notes = try trustedHeads.flatMap(readNotes)
            let verifier = try verifierKey.map { path in
                guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ValidationError("cannot read \(path)") }
                do { return try NoteVerifier(verifierKey: text.trimmingCharacters(in: .whitespacesAndNewlines)) } catch {
                    throw ValidationError("\(path): \(error)")
                }
            }
            let config = try common.configuration()
            // On a shared database: every gateway's log as shipped there, each against the trusted heads naming it; this
            // gateway's file against the others.
            let auditPath = try common.paths().auditDatabase
            let file = { (heads: [String], verifier: NoteVerifier?) in
                try AuditReader(path: auditPath).verify(
                    publicKey: key, logName: config.auditLogName, trustedHeads: heads, trustedVerifier: verifier)
            }
            var shared: [AuditVerification] = []
            let result: AuditVerification
            do {
                if config.sharedDatabase, let archive = try Backend.open(common).auditArchive {
                    shared = try await SharedAudit.verify(archive, publicKey: key, trustedHeads: notes, verifier: verifier)
                    result = try await SharedAudit.verify(
                        file: file, own: config.auditLogName, publicKey: key, trustedHeads: notes, verifier: verifier, copies: shared)
                } else {
                    result = try file(notes, verifier)
                }
            } catch let error as AuditError where error.invalidInput {
                throw ValidationError(error.message)
            }
            for log in shared {
                if let bad = log.firstBadSequence {
                    print("audit log '\(log.log ?? "")' in the shared database FAILED verification at entry \(bad): \(log.reason ?? "")")
                    printFurtherFailures(of: log)
                } else {
                    print(
                        "audit log '\(log.log ?? "")' in the shared database intact: \(log.entries) entries, signed through entry \(log.signedThrough)"
                            + (log.trustedHeads > 0 ? ", \(log.trustedHeads) trusted heads match, the largest of \(log.trustedThrough) entries" : ""))
                }
            }
            if let bad = result.firstBadSequence {
                print("audit log FAILED verification at entry \(bad): \(result.reason ?? "")")
                printFurtherFailures(of: result)
                throw ExitCode(1)
            }
            if shared.contains(where: { !$0.intact }) { throw ExitCode(1) }
            let unsigned = result.entries - result.signedThrough
            print(
                "audit log intact: \(result.entries) entries, \(result.checkpoints) signed heads, signed through entry \(result.signedThrough)"
                    + (unsigned > 0
                        ? "; the newest \(unsigned) are not yet under a signed head (the server signs one every \(AuditLog.defaultCheckpointInterval) entries or 30 s, and at shutdown)"
                        : "")
                    + (result.trustedHeads > 0 ? "; \(result.trustedHeads) trusted heads match, the largest of \(result.trustedThrough) entries" : "")
                    + "\nthis proves \(result.proves)")
        }

        /// What verification found beyond the first failure: a damaged part named at entry 1 must not hide the rest.
        private func printFurtherFailures(of result: AuditVerification) {
            let further = (result.failures ?? []).dropFirst()
            for failure in further { print("  also at entry \(failure.sequence): \(failure.reason)") }
            if further.count + 1 == AuditVerification.maxReportedFailures {
                print("  (the first \(AuditVerification.maxReportedFailures) failures are shown)")
            }
        }

        /// One file, or every `*.note` in a directory (a witness's `heads/`).
        private func readNotes(_ path: String) throws -> [String] {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw ValidationError("no trusted head at \(path)") }
            let files =
                isDirectory.boolValue
                ? try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".note") }.sorted().map { path + "/" + $0 }
                : [path]
            if files.isEmpty { throw ValidationError("\(path) holds no .note file") }
            return try files.map { file in
                guard let note = try? String(contentsOfFile: file, encoding: .utf8) else { throw ValidationError("cannot read \(file) as text") }
                return note
            }
        }
    }

    struct Query: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print matching entries: a table on a terminal, JSON lines otherwise (or with --json).",
            discussion: "With --subject, the id is tokenized as the API does (in --namespace) and the lookup is itself audited.")
        @OptionGroup var common: CommonOptions
        @Option var actor: String?
        @Option(help: "A person's subject id, as the app knows it (tokenized here; never stored).") var subject: String?
        @Option(help: "The namespace the subject id belongs to (the app's or tenant's).") var namespace = "default"
        @Option(help: "Subject token (tokens, never raw ids, are in the log).") var subjectToken: String?
        @Option var action: String?
        @Option var outcome: AuditOutcome?
        @Option(help: "Entries at or after this time: a day (2026-12-01, UTC) or ISO 8601.") var from: String?
        @Option(help: "Entries at or before this time: a day (the whole day) or ISO 8601.") var to: String?
        @Option(help: "Only entries after this sequence number (the cursor).") var after: Int64 = 0
        @Option(help: "1 to 1000.") var limit = 100
        @Flag(help: "JSON lines even on a terminal.") var json = false

        func run() async throws {
            guard (1...1000).contains(limit) else { throw ValidationError("--limit must be 1 to 1000") }
            guard subject == nil || subjectToken == nil else { throw ValidationError("give --subject or --subject-token, not both") }
            func millis(_ text: String?, _ name: String, endOfDay: Bool) throws -> Int64? {
                guard let text else { return nil }
                guard let t = AuditTime.millis(text, endOfDay: endOfDay) else {
                    throw ValidationError("--\(name) must be a day such as 2026-12-01 or an ISO 8601 time such as 2026-12-01T10:00:00Z")
                }
                return t
            }
            let paths = try common.paths()
            var token = subjectToken
            if let subject {
                let service = try openService(common)
                let found = try await service.subjects.token(for: subject, namespace: namespace)
                token = found.rawValue
                // Looking up one person's entries is an access to that person: recorded like the API's search.
                try await service.audit.append(
                    AuditRecord(
                        actor: "cli", role: Role.admin, action: Action.auditRead.rawValue, resource: "veil audit query", subjectToken: found.rawValue,
                        outcome: .allowed, reason: "entries of one subject looked up from the command line"))
                try await service.audit.checkpoint()
            }
            let index = try AuditIndex(path: paths.auditIndexDatabase, log: AuditReader(path: paths.auditDatabase))
            let entries = try index.query(
                AuditQuery(
                    actor: actor, subjectToken: token, action: action, outcome: outcome,
                    from: try millis(from, "from", endOfDay: false), to: try millis(to, "to", endOfDay: true), after: after, limit: limit))
            if json || isatty(STDOUT_FILENO) == 0 {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                for e in entries { print(String(decoding: try encoder.encode(Line(e)), as: UTF8.self)) }
            } else {
                printTable(entries)
            }
        }

        /// One entry as a line: the time in ISO 8601 (UTC), the record's fields flat.
        struct Line: Encodable {
            var sequence: Int64, time: String, actor: String, role: String, action: String, resource: String
            var subject_token: String?, purpose: String?, outcome: String, reason: String, request_id: String, hash: String
            init(_ e: AuditEntry) {
                sequence = e.sequence
                time = Query.iso(e.at)
                actor = e.record.actor
                role = e.record.role
                action = e.record.action
                resource = e.record.resource
                subject_token = e.record.subjectToken
                purpose = e.record.purpose
                outcome = e.record.outcome
                reason = e.record.reason
                request_id = e.record.requestID
                hash = e.hash
            }
        }

        static func iso(_ millis: Int64) -> String {
            Date(timeIntervalSince1970: Double(millis) / 1000).ISO8601Format()
        }

        func printTable(_ entries: [AuditEntry]) {
            guard !entries.isEmpty else { return print("no entries match") }
            let rows = entries.map { e in
                [
                    String(e.sequence), Self.iso(e.at), e.record.actor, e.record.action, e.record.resource, e.record.outcome,
                    String(e.record.reason.prefix(60)),
                ]
            }
            let header = ["#", "time (UTC)", "actor", "action", "resource", "outcome", "reason"]
            let widths = header.indices.map { c in ([header] + rows).map { $0[c].count }.max() ?? 0 }
            for row in [header] + rows {
                print(
                    row.indices.map { $0 == row.count - 1 ? row[$0] : row[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(
                        separator: "  "))
            }
            if entries.count == limit, let last = entries.last { print("more: --after \(last.sequence)") }
        }
    }

    struct Reindex: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rebuild the audit query index (data/audit-index.sqlite) from the log. Verification never reads it; queries do.")
        @OptionGroup var common: CommonOptions

        func run() throws {
            let paths = try common.paths()
            let start = Date()
            let index = try AuditIndex(path: paths.auditIndexDatabase, log: AuditReader(path: paths.auditDatabase))
            let count = try index.reindex()
            print("indexed \(count) entries in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write the log and its signed heads as JSON Lines to stdout.")
        @OptionGroup var common: CommonOptions

        func run() throws {
            FileHandle.standardOutput.write(Data(try AuditReader(path: try common.paths().auditDatabase).exportJSONLines()))
        }
    }

    struct Checkpoint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Sign a tree head over every entry so far (unless the newest already covers them) and print it: the signed note to keep outside the gateway for `verify --trusted-head`."
        )
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let service = try openService(common)
            guard let head = try await service.audit.checkpoint() else { throw CLIError(message: "the audit log is empty: nothing to sign") }
            print(head.note, terminator: "")
        }
    }

    struct Key: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the verifier key of the log's signed heads (`<origin>+<key id>+<key>`), for a witness's --key file.")
        @OptionGroup var common: CommonOptions
        @Option(help: "Ed25519 public key file (hex); default: <keys>/audit.pub.") var pubkey: String?

        func run() throws {
            let key = try readAuditPublicKey(pubkey, common)
            print(try HeadSigner.verifier(for: key, logName: try common.configuration().auditLogName).verifierKey)
        }
    }

    struct Prove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the inclusion proof of entry SEQ in a signed head, as JSON (base64 hashes).")
        @OptionGroup var common: CommonOptions
        @Argument(help: "The entry's sequence number (a response's Veil-Audit-Entry header).") var seq: Int64
        @Option(name: .customLong("tree-size"), help: "The size of a signed head; default: the newest.") var treeSize: Int64?

        func run() throws {
            do {
                try printJSON(AuditReader(path: try common.paths().auditDatabase).inclusionProof(sequence: seq, treeSize: treeSize))
            } catch let error as AuditProofError {
                throw CLIError(message: "\(error) (`veil audit checkpoint` signs a head over every entry)")
            }
        }
    }

    struct Consistency: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the consistency proof from the tree of FROM entries to a signed head, as JSON.")
        @OptionGroup var common: CommonOptions
        @Option(help: "The smaller tree size (a head you hold).") var from: Int64
        @Option(help: "The size of a signed head; default: the newest.") var to: Int64?

        func run() throws {
            do {
                try printJSON(AuditReader(path: try common.paths().auditDatabase).consistencyProof(from: from, to: to))
            } catch let error as AuditProofError {
                throw CLIError(message: error.description)
            }
        }
    }

    struct Witness: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Watch a gateway's signed heads from another machine: each must extend the last one held. Exits 3 on a cut, a fork or an inconsistent head.",
            discussion: "The API key (role witness) is read from VEIL_API_KEY or --api-key-file. Run it from cron with --once, or as a loop.")
        @Option(help: "The gateway's base URL, e.g. https://veil.example.com.") var url: String
        @Option(help: "File holding the log's verifier key (`veil audit key`).") var key: String
        @Option(help: "Directory for the heads seen (created).") var state: String
        @Option(name: .customLong("api-key-file"), help: "File holding an API key of role witness; default: $VEIL_API_KEY.") var apiKeyFile: String?
        @Flag(help: "Check once and exit (for cron).") var once = false
        @Option(help: "Seconds between checks when looping.") var interval: Double = 60

        func run() async throws {
            guard let keyText = try? String(contentsOfFile: key, encoding: .utf8) else {
                throw ValidationError("cannot read the verifier key file \(key)")
            }
            let verifier: NoteVerifier
            do { verifier = try NoteVerifier(verifierKey: keyText.trimmingCharacters(in: .whitespacesAndNewlines)) } catch {
                throw ValidationError("\(key): \(error)")
            }
            let apiKey =
                try apiKeyFile.map { path in
                    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ValidationError("cannot read \(path)") }
                    return text.trimmingCharacters(in: .whitespacesAndNewlines)
                } ?? ProcessInfo.processInfo.environment["VEIL_API_KEY"]
            guard let apiKey, !apiKey.isEmpty else { throw ValidationError("no API key: set VEIL_API_KEY or pass --api-key-file") }
            guard interval > 0 else { throw ValidationError("--interval must be positive") }
            let witness = try WitnessState(directory: state, verifier: verifier)
            try witness.lock()
            let base = url.hasSuffix("/") ? String(url.dropLast()) : url
            // A named log (one of several gateways') is asked for by name: any gateway on the shared database answers
            // for it, so the witness may reach them through their load balancer.
            let named = SharedAudit.logName(of: verifier.name, key: verifier.publicKey).map { "log=" + $0 }
            while true {
                do {
                    let note = try await fetchNote(base + "/v1/audit/checkpoint" + (named.map { "?" + $0 } ?? ""), apiKey: apiKey)
                    func proof(_ from: UInt64, _ to: UInt64) async throws -> [[UInt8]] {
                        try await fetchConsistency(
                            base + "/v1/audit/consistency?from=\(from)&to=\(to)" + (named.map { "&" + $0 } ?? ""), apiKey: apiKey)
                    }
                    // Another gateway than the log's own may refuse a proof of a log past what it proves from the copy:
                    // a fault of where the witness points, not of the log (whose signed head shows its size), so asked
                    // here first rather than counted as a refusal.
                    var early: (from: UInt64, to: UInt64, hashes: [[UInt8]])?
                    if named != nil, let size = try? witness.open(note).size, size > UInt64(SharedAudit.proofLimit),
                        let held = try witness.latest()?.checkpoint.size, held < size
                    {
                        do {
                            early = (held, size, try await proof(held, size))
                        } catch let error as WitnessError where "\(error)".contains("proof_too_large") {
                            throw TooLargeThroughAnother(description: "\(error)")
                        } catch {}
                    }
                    let (head, advanced) = try await witness.check(note) { from, to in
                        if let early, early.from == from, early.to == to { return early.hashes }
                        return try await proof(from, to)
                    }
                    if advanced { try witness.record(note, size: head.size) }
                    print("\(Date()) head of \(head.size) entries \(advanced ? "accepted" : "unchanged")")
                } catch let error as TooLargeThroughAnother {
                    FileHandle.standardError.write(
                        Data("witness: \(error.description)\npoint --url at the gateway that keeps log \(verifier.name) (its own address)\n".utf8))
                    throw ExitCode(1)
                } catch let error as WitnessError where error.isMisbehaviour {
                    FileHandle.standardError.write(Data("ALERT: audit log \(verifier.name) at \(base) misbehaved: \(error)\n".utf8))
                    throw ExitCode(3)
                } catch {
                    FileHandle.standardError.write(Data("witness: \(error)\n".utf8))
                    if once { throw ExitCode(1) }
                }
                if once { return }
                try await Task.sleep(for: .seconds(interval))
            }
        }

        private func get(_ url: String, apiKey: String) async throws -> Data {
            guard let target = URL(string: url) else { throw WitnessError.unreachable("bad URL \(url)") }
            var request = URLRequest(url: target)
            request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization")
            let (data, response) = try await URLSession.shared.data(for: request)
            let status = (response as? HTTPURLResponse)?.statusCode ?? 0
            guard status == 200 else {
                throw WitnessError.unreachable("GET \(target.path) answered \(status): \(String(decoding: data.prefix(200), as: UTF8.self))")
            }
            return data
        }

        private func fetchNote(_ url: String, apiKey: String) async throws -> String {
            try JSONDecoder().decode(AuditCheckpoint.self, from: try await get(url, apiKey: apiKey)).note
        }

        private func fetchConsistency(_ url: String, apiKey: String) async throws -> [[UInt8]] {
            let proof = try JSONDecoder().decode(AuditConsistencyProof.self, from: try await get(url, apiKey: apiKey))
            return try proof.hashes.map { hash in
                guard let bytes = Data(base64Encoded: hash) else { throw WitnessError.unreachable("the proof holds a hash that is not base64") }
                return [UInt8](bytes)
            }
        }
    }
}

/// A named log's proof refused by another gateway for its size: where the witness points is wrong, not the log.
struct TooLargeThroughAnother: Error, CustomStringConvertible {
    let description: String
}

/// The audit public key from `--pubkey`, else `<keys>/audit.pub`.
func readAuditPublicKey(_ path: String?, _ common: CommonOptions) throws -> SigningPublicKey {
    let keyPath = try path ?? (common.paths().keysDirectory as NSString).appendingPathComponent("audit.pub")
    guard let text = try? String(contentsOfFile: keyPath, encoding: .utf8),
        let bytes = [UInt8](hexString: text.trimmingCharacters(in: .whitespacesAndNewlines)),
        let key = try? SigningPublicKey(bytes: bytes)
    else {
        throw ValidationError("cannot read an Ed25519 public key from \(keyPath); pass --pubkey FILE")
    }
    return key
}

struct ModelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "What the running server's model was trained on.",
        subcommands: [Provenance.self])

    struct Provenance: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Print the served model's version, how many subjects it was trained on and their keyed digest; with --subject, whether that subject's data is in it.",
            discussion:
                "Asks the running server (GET /v1/model/provenance), with an API key of a role that may audit:read from VEIL_API_KEY; the lookup of a subject is audited."
        )
        @Option(help: "The gateway's base URL.") var url = "http://127.0.0.1:8080"
        @Option(help: "The app's subject id; tokenized by the gateway.") var subject: String?

        func run() async throws {
            guard let apiKey = ProcessInfo.processInfo.environment["VEIL_API_KEY"], !apiKey.isEmpty else {
                throw ValidationError("no API key: set VEIL_API_KEY to a key of a compliance officer or admin")
            }
            var components = URLComponents(string: (url.hasSuffix("/") ? String(url.dropLast()) : url) + "/v1/model/provenance")
            if let subject { components?.queryItems = [URLQueryItem(name: "subject", value: subject)] }
            guard let target = components?.url else { throw ValidationError("bad --url \(url)") }
            var request = URLRequest(url: target)
            request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization")
            let (data, response) = try await URLSession.shared.data(for: request)
            let status = (response as? HTTPURLResponse)?.statusCode ?? 0
            guard status == 200 else {
                throw CLIError(message: "the server answered \(status): \(String(decoding: data.prefix(300), as: UTF8.self))")
            }
            print(String(decoding: data, as: UTF8.self))
        }
    }
}
