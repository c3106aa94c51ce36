import Audit
import Foundation
import Logging
import Persistence
import Vault

/// The audit logs of every gateway on a shared database, kept as one: each gateway ships its own log (entries made
/// durable in its own file before its responses, and its signed heads) into the database within about a second, and
/// any gateway verifies and queries all of them. A copy is held to its signed heads exactly as the file is, so whoever
/// can write the database gains nothing the file's writer would not: a rewrite shows against the heads, a re-signed
/// copy against a head kept elsewhere.
public struct SharedAudit: Sendable {
    let archive: any AuditArchive
    let audit: any AuditTrail
    /// This gateway's log's name (`audit.log_name`).
    public let log: String
    let publicKey: SigningPublicKey
    let logger: Logger

    /// Entries shipped per transaction.
    static let page = 1000

    /// A copy of the log that this gateway cannot continue: another gateway shipped under its name, or its own file
    /// was cut or replaced after shipping.
    public struct Diverged: Error, CustomStringConvertible {
        public let description: String
    }

    /// Reserves this gateway's log name in the database for as long as the process lives (a second gateway started
    /// with the same name is refused).
    public func claim() async throws { try await archive.claim(log: log) }

    /// Ships every entry and signed head not yet in the database; returns how many entries it shipped. Heads are
    /// shipped with the entries they cover, never before them (a head beyond the copy's entries reads as a cut).
    @discardableResult
    public func shipPending() async throws -> Int {
        let (shippedThrough, hash, headSize) = try await archive.shipped(log: log)
        var sequence = shippedThrough
        let audit = self.audit
        if sequence > 0 {
            let local = try await offThePool { try audit.entries(after: shippedThrough - 1, limit: 1) }.first
            guard let local, local.hash == hash else {
                throw Diverged(
                    description: local == nil
                        ? "the shared database holds \(sequence) entries of audit log '\(log)', this gateway's file fewer: the file was cut or replaced, or another gateway uses this log name"
                        : "entry \(sequence) of audit log '\(log)' in the shared database differs from this gateway's file: another gateway uses this log name, or one copy was rewritten"
                )
            }
        }
        var heads = try await offThePool { try audit.checkpoints(after: headSize) }
        var shipped = 0
        // Only what a power cut cannot take from the file: the copy must never hold an entry the file could lose.
        let durable = audit.durableCount
        while sequence < durable || !heads.isEmpty {
            let after = sequence
            let entries = try await offThePool { try audit.entries(after: after, limit: Self.page) }.filter { $0.sequence <= durable }
            let through = entries.last?.sequence ?? sequence
            let covered = heads.prefix { $0.size <= through }
            guard !entries.isEmpty || !covered.isEmpty else { break }
            try await archive.ship(
                entries: try entries.map { try Self.archived($0, log: log) },
                heads: covered.map { ArchivedAuditHead(log: log, size: $0.size, at: $0.at, note: $0.note) })
            heads.removeFirst(covered.count)
            sequence = through
            shipped += entries.count
            if entries.count < Self.page { break }
        }
        return shipped
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
        try await shipPending()
        return try await Self.verify(archive, publicKey: publicKey, trustedHeads: trustedHeads, verifier: verifier)
    }

    /// Verifies every log shipped to `archive` (what ``verifyAll(trustedHeads:verifier:)`` does after shipping; the
    /// command line's `veil audit verify`, which ships nothing).
    public static func verify(
        _ archive: any AuditArchive, publicKey: SigningPublicKey, trustedHeads: [String], verifier: NoteVerifier?
    ) async throws -> [AuditVerification] {
        var results: [AuditVerification] = []
        for name in try await archive.logs() {
            // Heads signed with another key are this gateway's own log's (``VeilService/verifyAuditLog``); the audit key's
            // name the log they belong to in their origin.
            let origin = HeadSigner.defaultOrigin(for: publicKey, logName: name)
            let mine = verifier == nil ? trustedHeads.filter { Self.origin(of: $0) == origin } : []
            let heads = try await archive.heads(log: name).map { AuditCheckpoint(note: $0.note, size: $0.size, at: $0.at) }
            var check = try StreamedLogVerification(publicKey: publicKey, logName: name, heads: heads, trustedHeads: mine)
            var after: Int64 = 0
            let decoder = JSONDecoder()
            while true {
                let page = try await archive.entries(log: name, after: after, limit: 5000)
                for row in page {
                    guard let entry = try? decoder.decode(AuditEntry.self, from: Data(row.body)) else {
                        check.fail(at: row.sequence, "entry \(row.sequence) of the copy cannot be read")
                        continue
                    }
                    // The columns a query filters on are derived, never trusted; one that disagrees would hide the
                    // entry from a query that should find it.
                    if row.at != entry.at || row.actor != entry.record.actor || row.action != entry.record.action
                        || row.outcome != entry.record.outcome || row.subjectToken != entry.record.subjectToken || row.hash != entry.hash
                    {
                        check.fail(at: row.sequence, "entry \(row.sequence)'s query columns disagree with the entry (a query would miss it)")
                        continue
                    }
                    check.add(entry, at: row.sequence)
                }
                guard let last = page.last, page.count == 5000 else { break }
                after = last.sequence
            }
            var result = check.finish()
            result.log = name
            results.append(result)
        }
        return results
    }

    /// A signed note's origin: its first line.
    static func origin(of note: String) -> Substring { note.prefix { $0 != "\n" } }

    /// The entries of every gateway's log matching `query`, in the order they reached the database (this gateway's
    /// shipped first, so that its own latest are in), each with its log's name; the cursor is a position in that order.
    func query(_ query: AuditQuery) async throws -> [LoggedAuditEntry] {
        try await shipPending()
        let rows = try await archive.query(
            ArchivedAuditFilter(
                actor: query.actor, subjectToken: query.subjectToken, action: query.action, outcome: query.outcome?.rawValue,
                from: query.from, to: query.to, after: query.after, limit: query.limit))
        let decoder = JSONDecoder()
        return try rows.map { row in
            guard let entry = try? decoder.decode(AuditEntry.self, from: Data(row.body)) else {
                throw Diverged(description: "entry \(row.sequence) of audit log '\(row.log)' in the shared database cannot be read")
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
