import Audit
import Foundation
import Logging
import Persistence
import Synchronization
import Vault

/// The audit logs of every gateway on a shared database, kept as one: each gateway ships its own log (entries made
/// durable in its own file before its responses, and its signed heads) into the database within about a second, and
/// any gateway verifies and queries all of them. A copy is held to its signed heads exactly as the file is, so whoever
/// can write the database gains nothing the file's writer would not: a rewrite shows against the heads, a re-signed
/// copy against a head kept elsewhere.
public final class SharedAudit: Sendable {
    let archive: any AuditArchive
    let audit: any AuditTrail
    /// This gateway's log's name (`audit.log_name`).
    public let log: String
    let publicKey: SigningPublicKey
    let logger: Logger
    /// One shipment at a time in this process: a request that finds one running does not start another.
    private let shipping = Mutex(false)
    /// The largest head a consistency proof from a copy reaches (``proofLimit`` unless a test sets a smaller one).
    let proofSizeLimit: Int64

    init(
        archive: any AuditArchive, audit: any AuditTrail, log: String, publicKey: SigningPublicKey, logger: Logger,
        proofSizeLimit: Int64 = SharedAudit.proofLimit
    ) {
        self.proofSizeLimit = proofSizeLimit
        self.archive = archive
        self.audit = audit
        self.log = log
        self.publicKey = publicKey
        self.logger = logger
    }

    /// Entries shipped per transaction.
    static let page = 1000
    /// Entries of a copy read per statement while verifying it.
    static let verifyPage = 5000

    /// A copy of the log that this gateway cannot continue without destroying evidence: the copy holds a head signed
    /// with the audit key that this gateway's file does not (its file was cut or replaced, or another gateway ships
    /// under its name).
    public struct Diverged: Error, CustomStringConvertible {
        public let description: String
    }

    /// Reserves this gateway's log name in the database for as long as the process lives (a second gateway started
    /// with the same name is refused).
    public func claim() async throws { try await archive.claim(log: log) }

    /// Ships every entry and signed head not yet in the database, at most `pages` transactions of them (a request
    /// ships what little is pending; the background shipper catches up with any backlog); returns how many entries
    /// it shipped, nil when another shipment of this process was running. Heads are shipped with the entries they
    /// cover, never before them (a head beyond the copy's entries reads as a cut).
    @discardableResult
    public func shipPending(pages: Int = .max) async throws -> Int? {
        guard
            shipping.withLock({ busy in
                defer { busy = true }; return !busy
            })
        else { return nil }
        defer { shipping.withLock { $0 = false } }
        var (sequence, hash, headSize) = try await archive.shipped(log: log)
        let audit = self.audit
        let through = sequence
        let local = through > 0 ? try await offThePool { try audit.entries(after: through - 1, limit: 1) }.first : nil
        let fileHeads = try await offThePool { try audit.newestCheckpoint()?.size ?? 0 }
        // The copy's last entry is not the file's, or it claims a head the file never signed (a row an editor made
        // up would otherwise hold back every later head): repaired from the file before anything is shipped.
        if (through > 0 && local?.hash != hash) || headSize > fileHeads {
            try await repairCopy()
            (sequence, _, headSize) = try await archive.shipped(log: log)
        }
        // A log's first shipment carries a signed head: a copy that no head vouches for is not a gateway's.
        var durable = audit.durableCount
        if headSize == 0, durable > sequence, let head = try await audit.checkpoint() { durable = max(durable, head.size) }
        let since = headSize
        var heads = try await offThePool { try audit.checkpoints(after: since) }
        var shipped = 0, vouched = headSize > 0
        // Only what a power cut cannot take from the file: the copy must never hold an entry the file could lose.
        for _ in 0..<max(1, pages) {
            let after = sequence
            let entries = try await offThePool { try audit.entries(after: after, limit: Self.page) }.filter { $0.sequence <= durable }
            let through = entries.last?.sequence ?? sequence
            var covered = Array(heads.prefix { $0.size <= through })
            heads.removeFirst(covered.count)
            // Until a head is in the database, every shipment carries one: no reader may find the log's entries there
            // vouched for by no head (which reads as a log no gateway signed). When the file's first head lies beyond
            // this page (a log kept before the database was shared), one is signed over what the page ships.
            if !vouched, covered.isEmpty, through > 0, let head = try await audit.checkpoint(size: through) { covered = [head] }
            guard !entries.isEmpty || !covered.isEmpty else { break }
            try await archive.ship(
                entries: try entries.map { try Self.archived($0, log: log) },
                heads: covered.map { ArchivedAuditHead(log: log, size: $0.size, at: $0.at, note: $0.note) })
            vouched = vouched || !covered.isEmpty
            sequence = through
            shipped += entries.count
            if entries.count < Self.page { break }
        }
        return shipped
    }

    /// The copy's last entry is not the file's. Its tail after the largest head both hold is replaced from the file
    /// when no head signed with the audit key vouches for it (rows an editor appended, or entries a power cut took
    /// from a file that does not sync); a signed head the file lacks is evidence against the file, and is kept.
    private func repairCopy() async throws {
        let audit = self.audit
        let fileHeads = try await offThePool { try audit.checkpoints(after: 0) }
        let notes = Dictionary(fileHeads.map { ($0.size, $0.note) }, uniquingKeysWith: { a, _ in a })
        let verifier = try HeadSigner.verifier(for: publicKey, logName: log)
        let copyHeads = try await archive.heads(log: log)
        // Evidence: a head signed with the audit key, saying the size its row says, that the file does not hold as it
        // is. A row whose note says another size, or that no key signed, is an editor's and goes with the tail.
        if let signed = copyHeads.first(where: { notes[$0.size] != $0.note && Self.isSigned($0, by: verifier) }) {
            throw Diverged(
                description:
                    "the shared database's copy of audit log '\(log)' holds a head of \(signed.size) entries signed with the audit key that this gateway's file does not: the file was cut or replaced, or another gateway ships under this name; nothing is shipped until someone looks"
            )
        }
        // The largest head both hold under which the copy's entry is the file's: everything after it is replaced.
        var kept: Int64 = 0
        for size in copyHeads.map(\.size).filter({ notes[$0] != nil }).sorted(by: >) {
            let copied = try await archive.entries(log: log, after: ArchiveCursor(sequence: size - 1, position: .max), limit: 1).first
            let local = try await offThePool { try audit.entries(after: size - 1, limit: 1) }.first
            if let copied, copied.sequence == size, copied.hash == local?.hash {
                kept = size
                break
            }
        }
        try await archive.retract(log: log, after: kept)
        logger.error(
            "the shared database's copy of this gateway's audit log differed from the file where no head signed with the audit key vouches for it; replaced from the file",
            metadata: ["log": "\(log)", "kept_through": "\(kept)"])
    }

    static func archived(_ entry: AuditEntry, log: String) throws -> ArchivedAuditEntry {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return ArchivedAuditEntry(
            log: log, sequence: entry.sequence, at: entry.at, actor: entry.record.actor, action: entry.record.action,
            outcome: entry.record.outcome, subjectToken: entry.record.subjectToken, hash: entry.hash,
            body: Array(try encoder.encode(entry)))
    }

    /// Verifies every log in the database, each against its own signed heads and the trusted heads that name it;
    /// `verifier` (another key than the audit key) is taken to have signed heads of the log it names.
    func verifyAll(trustedHeads: [String], verifier: NoteVerifier?) async throws -> [AuditVerification] {
        do {
            try await shipPending(pages: 1)
        } catch {
            // The copies are verified all the same: a copy this gateway cannot continue is what to look at.
            logger.error("shipping the audit log before verifying failed", metadata: ["error": "\(error)"])
        }
        return try await Self.verify(archive, publicKey: publicKey, trustedHeads: trustedHeads, verifier: verifier)
    }

    /// The name of the log a signed note is a head of, when its origin is a named log's under `key`.
    /// (`note` may be an origin alone, as a verifier key's name is.)
    public static func logName(of note: String, key: SigningPublicKey) -> String? {
        let origin = note.prefix { $0 != "\n" }
        let prefix = HeadSigner.defaultOrigin(for: key) + "/"
        guard origin.hasPrefix(prefix) else { return nil }
        let name = String(origin.dropFirst(prefix.count))
        return HeadSigner.isValidLogName(name) ? name : nil
    }

    /// A gateway's file verified beside the copies in the database (`copies`, what ``verify(_:publicKey:trustedHeads:verifier:)``
    /// found): `file` is called with the trusted heads of the gateway's own log `own` (or of no named log) and the
    /// verifier if it is that log's, since another log's head is checked against that log, not held against this one.
    /// The answer is the file's, with `logs` and the verdict on all (`allLogsIntact`).
    public static func verify(
        file: ([String], NoteVerifier?) async throws -> AuditVerification, own: String?, publicKey: SigningPublicKey,
        trustedHeads: [String], verifier: NoteVerifier?, copies: [AuditVerification]
    ) async throws -> AuditVerification {
        let heads = trustedHeads.filter { note in logName(of: note, key: publicKey).map { $0 == own } ?? true }
        let ownVerifier = verifier.flatMap { v in logName(of: v.name, key: publicKey).map { $0 == own ? v : nil } ?? v }
        var result = try await file(heads, ownVerifier)
        result.log = own
        result.logs = copies
        result.allLogsIntact = result.intact && copies.allSatisfy(\.intact)
        return result
    }

    /// Verifies every log shipped to `archive` (what ``verifyAll(trustedHeads:verifier:)`` does after shipping; the
    /// command line's `veil audit verify`, which ships nothing). A log a trusted head names but the database no
    /// longer holds fails as cut to nothing.
    public static func verify(
        _ archive: any AuditArchive, publicKey: SigningPublicKey, trustedHeads: [String], verifier: NoteVerifier?
    ) async throws -> [AuditVerification] {
        var names = Set(try await archive.logs())
        names.formUnion(trustedHeads.compactMap { logName(of: $0, key: publicKey) })
        var results: [AuditVerification] = []
        for name in names.sorted() {
            guard HeadSigner.isValidLogName(name) else {
                results.append(AuditVerification(failedLog: name, reason: "the database holds a log under a name no gateway can have"))
                continue
            }
            let origin = HeadSigner.defaultOrigin(for: publicKey, logName: name)
            let mine = trustedHeads.filter { $0.prefix { $0 != "\n" } == origin }
            let heads = try await archive.heads(log: name).map { AuditCheckpoint(note: $0.note, size: $0.size, at: $0.at) }
            var check = try StreamedLogVerification(
                publicKey: publicKey, logName: name, heads: heads, trustedHeads: mine,
                trustedVerifier: verifier?.name == origin ? verifier : nil)
            var after = ArchiveCursor.start
            while true {
                let page = try await archive.entries(log: name, after: after, limit: verifyPage)
                check = try await offThePool { [check] in Self.feed(check, page) }
                guard let last = page.last, page.count == verifyPage else { break }
                after = ArchiveCursor(sequence: last.sequence, position: last.position)
            }
            var result = check.finish()
            result.log = name
            if result.intact, result.entries > 0, result.signedThrough == 0 {
                result.fail(at: 1, "no head signed with the audit key covers any entry: nothing shows this log to be a gateway's")
            }
            results.append(result)
        }
        return results
    }

    /// One page of a copy's rows into the verification: each decoded from its body, its indexed columns checked
    /// byte for byte against the entry (an edited column would hide the entry from a query that should find it).
    private static func feed(_ check: StreamedLogVerification, _ page: [ArchivedAuditEntry]) -> StreamedLogVerification {
        var check = check
        let decoder = JSONDecoder()
        func same(_ a: String?, _ b: String?) -> Bool { a.map { Array($0.utf8) } == b.map { Array($0.utf8) } }
        for row in page {
            guard let entry = try? decoder.decode(AuditEntry.self, from: Data(row.body)) else {
                check.fail(at: row.sequence, "entry \(row.sequence) of the copy cannot be read")
                continue
            }
            guard row.at == entry.at, same(row.actor, entry.record.actor), same(row.action, entry.record.action),
                same(row.outcome, entry.record.outcome), same(row.subjectToken, entry.record.subjectToken), same(row.hash, entry.hash)
            else {
                check.fail(at: row.sequence, "entry \(row.sequence)'s query columns disagree with the entry (a query would miss it)")
                continue
            }
            check.add(entry, at: row.sequence)
        }
        return check
    }

    /// The newest signed head of gateway `name`'s log as shipped (nil before its first).
    public func newestHead(of name: String) async throws -> AuditCheckpoint? {
        try await validHeads(of: name).last
    }

    /// The heads of `name`'s copy that are signed with the audit key under its origin and say the size their row
    /// says, smallest first: what a witness is served (a row an editor made up is not).
    func validHeads(of name: String) async throws -> [AuditCheckpoint] {
        let verifier = try HeadSigner.verifier(for: publicKey, logName: name)
        return try await archive.heads(log: name).filter { Self.isSigned($0, by: verifier) }.map {
            AuditCheckpoint(note: $0.note, size: $0.size, at: $0.at)
        }
    }

    /// Whether `row`'s note is a checkpoint signed by `verifier` that says the size and (if it states one) the time
    /// the row says.
    static func isSigned(_ row: ArchivedAuditHead, by verifier: NoteVerifier) -> Bool {
        guard let text = try? SignedNote.open(row.note, verifiers: [verifier]).text, let head = try? Checkpoint(text: text) else {
            return false
        }
        return Int64(exactly: head.size) == row.size && HeadSigner.states(head, signedAt: row.at)
    }

    /// A copy too large to prove from: the witness must ask the gateway that keeps the log.
    public struct ProofTooLarge: Error, CustomStringConvertible {
        public let log: String
        public let size: Int64
        public let limit: Int64
        public var description: String {
            "log \(log) holds \(size) entries, more than the \(limit) a proof from its copy covers: ask the gateway that keeps it directly"
        }
    }

    /// Copies this large at most answer a consistency proof (its digests are read whole); a witness of a larger log
    /// asks its gateway directly.
    public static let proofLimit: Int64 = 1_000_000

    /// The consistency proof from `from` entries to the head of `to` (the newest by default) of gateway `name`'s log,
    /// from its copy: what a witness reaching the gateways through a load balancer asks any of them for.
    public func consistencyProof(of name: String, from: Int64, to: Int64?) async throws -> AuditConsistencyProof {
        let heads = try await validHeads(of: name)
        guard let newest = heads.last else { throw AuditProofError.noSuchHead(to ?? 0, newest: 0) }
        let size = to ?? newest.size
        guard let head = heads.first(where: { $0.size == size }) else { throw AuditProofError.noSuchHead(size, newest: newest.size) }
        guard from >= 1, from <= head.size else {
            throw AuditProofError.invalidRange("from must be between 1 and the head's size \(head.size), found \(from)")
        }
        guard head.size <= proofSizeLimit else { throw ProofTooLarge(log: name, size: head.size, limit: proofSizeLimit) }
        let digests = try await archive.digests(log: name, through: head.size)
        let fromHead = heads.first { $0.size == from }
        return try await offThePool { try AuditConsistencyProof.fromDigests(digests, from: from, head: head, fromHead: fromHead) }
    }

    /// The entries of every gateway's log matching `query`, in the order they reached the database (this gateway's
    /// pending ones shipped first, so that its own latest are in), each with its log's name; the cursor is a position
    /// in that order.
    func query(_ query: AuditQuery) async throws -> [LoggedAuditEntry] {
        do {
            try await shipPending(pages: 1)
        } catch {
            logger.error("shipping the audit log before a query failed", metadata: ["error": "\(error)"])
        }
        let rows = try await archive.query(
            ArchivedAuditFilter(
                actor: query.actor, subjectToken: query.subjectToken, action: query.action, outcome: query.outcome?.rawValue,
                from: query.from, to: query.to, after: query.after, limit: query.limit))
        let decoder = JSONDecoder()
        return rows.compactMap { row in
            guard let entry = try? decoder.decode(AuditEntry.self, from: Data(row.body)) else {
                // Verification names it; one broken row must not take every query down.
                logger.error("an entry in the shared audit archive cannot be read", metadata: ["log": "\(row.log)", "sequence": "\(row.sequence)"])
                return nil
            }
            return LoggedAuditEntry(log: row.log, position: row.position, entry: entry)
        }
    }
}

/// An entry as a query answers it: the entry's own fields and, on a shared database, its log's name.
public struct LoggedAuditEntry: Sendable, Encodable {
    public var log: String?
    /// Where the shared database placed it: the cursor of the next page.
    public var position: Int64
    public var entry: AuditEntry

    public func encode(to encoder: any Encoder) throws {
        try entry.encode(to: encoder)
        enum Keys: String, CodingKey { case log }
        var container = encoder.container(keyedBy: Keys.self)
        try container.encodeIfPresent(log, forKey: .log)
    }
}
