import Foundation
import GRDB
import Storage
import Vault

/// Filters for a compliance query. All optional; results are in sequence order.
public struct AuditQuery: Sendable {
    public var actor: String?
    public var subjectToken: String?
    public var action: String?
    public var outcome: AuditOutcome?
    /// Milliseconds since the epoch, inclusive bounds.
    public var from: Int64?
    public var to: Int64?
    /// Return entries with a sequence number above this (the cursor).
    public var after: Int64 = 0
    public var limit: Int = 100

    public init(actor: String? = nil, subjectToken: String? = nil, action: String? = nil, outcome: AuditOutcome? = nil,
                from: Int64? = nil, to: Int64? = nil, after: Int64 = 0, limit: Int = 100) {
        self.actor = actor
        self.subjectToken = subjectToken
        self.action = action
        self.outcome = outcome
        self.from = from
        self.to = to
        self.after = after
        self.limit = limit
    }
}

/// The result of ``AuditReader/verify(publicKey:)``.
public struct AuditVerification: Sendable, Equatable, Codable {
    public var entries: Int64
    public var checkpoints: Int
    /// The entry the newest valid signed checkpoint covers (0 without one). Entries after it are chained but not yet
    /// signed: cutting them off leaves a log that still verifies, so an officer should know how many there are.
    public var signedThrough: Int64 = 0
    /// The first sequence number at which the log fails to verify; nil when intact.
    public var firstBadSequence: Int64?
    public var reason: String?
    public var intact: Bool { firstBadSequence == nil }
    /// What "intact" can mean for a log checked against itself alone: said with every result, so nobody reads more
    /// into it.
    public var proves = AuditVerification.withoutTrustedHead

    public static let withoutTrustedHead = "internal consistency only: the chain and the signed checkpoints stored in this same file agree; "
        + "a log cut after its last kept checkpoint, with the later checkpoints deleted, verifies too. Detecting that needs a "
        + "signed head kept elsewhere, which Veil does not support yet"
}

/// Read-only access to an audit database: query, verify, export. Works on a copy of the file too.
public struct AuditReader: Sendable {
    public let store: Store

    public init(store: Store) { self.store = store }

    /// Opens an audit database for reading (it must exist).
    public init(path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else {
            throw AuditError("no audit log at \(path); check --data-dir")
        }
        store = try Store(path: path, migrations: [AuditLog.Migrations()])
    }

    public func query(_ q: AuditQuery) throws -> [AuditEntry] {
        var clauses = ["seq > ?"]
        var arguments: [(any DatabaseValueConvertible)?] = [q.after]
        func add(_ clause: String, _ value: (any DatabaseValueConvertible)?) {
            guard let value else { return }
            clauses.append(clause)
            arguments.append(value)
        }
        add("actor = ?", q.actor)
        add("subject_token = ?", q.subjectToken)
        add("action = ?", q.action)
        add("outcome = ?", q.outcome?.rawValue)
        add("at >= ?", q.from)
        add("at <= ?", q.to)
        let sql = "SELECT * FROM entries WHERE \(clauses.joined(separator: " AND ")) ORDER BY seq LIMIT \(max(1, min(q.limit, 1000)))"
        return try store.pool.read { db in
            try Row.fetchAll(db, sql: sql, arguments: StatementArguments(arguments)).map(Self.entry)
        }
    }

    public func checkpoints() throws -> [AuditCheckpoint] {
        try store.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM checkpoints ORDER BY seq").map {
                AuditCheckpoint(sequence: $0["seq"], headHash: $0["head_hash"], at: $0["at"], signature: $0["signature"])
            }
        }
    }

    static let columns = "seq, at, actor, role, action, resource, subject_token, purpose, outcome, reason, request_id, prev_hash, hash"

    /// Reads a row selected with ``columns`` by position (faster than by name on a million rows).
    static func entryByIndex(_ row: Row) -> AuditEntry {
        AuditEntry(
            sequence: row[0], at: row[1],
            record: AuditRecord(actor: row[2], role: row[3], action: row[4], resource: row[5], subjectToken: row[6], purpose: row[7],
                                outcomeText: row[8], reason: row[9], requestID: row[10]),
            previousHash: row[11], hash: row[12])
    }

    static func entry(_ row: Row) -> AuditEntry {
        AuditEntry(
            sequence: row["seq"], at: row["at"],
            record: AuditRecord(actor: row["actor"], role: row["role"], action: row["action"], resource: row["resource"],
                                subjectToken: row["subject_token"], purpose: row["purpose"], outcomeText: row["outcome"],
                                reason: row["reason"], requestID: row["request_id"]),
            previousHash: row["prev_hash"], hash: row["hash"])
    }

    /// Recomputes every entry hash and link, and checks every checkpoint's signature and head.
    /// Detects a changed byte in any field, a removed, inserted, duplicated or reordered entry, and a log cut
    /// before its last checkpoint.
    public func verify(publicKey: SigningPublicKey) throws -> AuditVerification {
        let checkpoints = try self.checkpoints()
        var hashes: [Int64: String] = [:]
        let wanted = Set(checkpoints.map(\.sequence))
        var expected: Int64 = 1
        var previous = AuditLog.genesisHash
        var count: Int64 = 0
        var failure: (Int64, String)?
        do {
            try store.pool.read { db in
                let cursor = try Row.fetchCursor(db, sql: "SELECT \(Self.columns) FROM entries ORDER BY seq")
                while let row = try cursor.next() {
                    let e = Self.entryByIndex(row)
                    if e.sequence != expected {
                        failure = (min(e.sequence, expected), "expected entry \(expected), found \(e.sequence) (entry removed, inserted or reordered)")
                        return
                    }
                    if e.previousHash != previous {
                        failure = (e.sequence, "link to the previous entry is broken")
                        return
                    }
                    if AuditEntry.computeHash(sequence: e.sequence, at: e.at, record: e.record, previousHash: previous) != e.hash {
                        failure = (e.sequence, "entry content does not match its hash")
                        return
                    }
                    if wanted.contains(e.sequence) { hashes[e.sequence] = e.hash }
                    previous = e.hash
                    expected += 1
                    count += 1
                }
            }
        } catch {
            return AuditVerification(entries: count, checkpoints: checkpoints.count, firstBadSequence: expected, reason: "the log cannot be read past this entry: \(error)")
        }
        if let (seq, reason) = failure {
            return AuditVerification(entries: count, checkpoints: checkpoints.count, firstBadSequence: seq, reason: reason)
        }
        for cp in checkpoints {
            guard let signature = [UInt8](hexString: cp.signature), publicKey.isValidSignature(signature, for: cp.message) else {
                return AuditVerification(entries: count, checkpoints: checkpoints.count, firstBadSequence: cp.sequence, reason: "checkpoint at \(cp.sequence) has an invalid signature")
            }
            guard cp.sequence <= count else {
                return AuditVerification(entries: count, checkpoints: checkpoints.count, firstBadSequence: count + 1, reason: "log is cut: a signed checkpoint covers \(cp.sequence) entries, only \(count) remain")
            }
            guard hashes[cp.sequence] == cp.headHash else {
                return AuditVerification(entries: count, checkpoints: checkpoints.count, firstBadSequence: cp.sequence, reason: "checkpoint at \(cp.sequence) does not match the entry there")
            }
        }
        // Every checkpoint checked above, in sequence order: the last one is how far the signatures reach.
        return AuditVerification(entries: count, checkpoints: checkpoints.count, signedThrough: checkpoints.last?.sequence ?? 0,
                                 firstBadSequence: nil, reason: nil)
    }

    /// The whole log as JSON Lines: one `{"entry": …}` per entry, then one `{"checkpoint": …}` per checkpoint.
    public func exportJSONLines() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var out: [UInt8] = []
        var after: Int64 = 0
        while true {
            let page = try query(AuditQuery(after: after, limit: 1000))
            if page.isEmpty { break }
            for e in page {
                out += Array(#"{"entry":"#.utf8) + Array(try encoder.encode(e)) + Array("}\n".utf8)
            }
            after = page.last!.sequence
        }
        for cp in try checkpoints() {
            out += Array(#"{"checkpoint":"#.utf8) + Array(try encoder.encode(cp)) + Array("}\n".utf8)
        }
        return out
    }
}
