import Foundation
import GRDB
import SQLiteStorage
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

    public init(
        actor: String? = nil, subjectToken: String? = nil, action: String? = nil, outcome: AuditOutcome? = nil,
        from: Int64? = nil, to: Int64? = nil, after: Int64 = 0, limit: Int = 100
    ) {
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

/// The result of ``AuditReader/verify(publicKey:trustedHeads:trustedVerifier:)``.
public struct AuditVerification: Sendable, Equatable, Codable {
    public var entries: Int64
    /// Signed tree heads stored in the log (and, in a log older than the tree, chain checkpoints).
    public var checkpoints: Int
    /// The size of the newest valid signed head stored in the log (0 without one). Entries after it are not yet
    /// signed: cutting them off leaves a log that still verifies on its own, so an officer should know how many.
    public var signedThrough: Int64 = 0
    /// Heads held outside the log (a compliance officer's or a witness's) that were checked.
    public var trustedHeads: Int = 0
    /// The largest trusted head the log still matches (0 when none was given or none matches).
    public var trustedThrough: Int64 = 0
    /// The first sequence number at which the log fails to verify; nil when intact. Against trusted heads, the
    /// first entry not vouched for by a head that still matches (a root commits to its entries as a whole, so a
    /// rewrite is located between the last matching trusted head and the first failing one).
    public var firstBadSequence: Int64?
    public var reason: String?
    public var intact: Bool { firstBadSequence == nil }
    /// Every failure found, by sequence number (the first is `firstBadSequence` and `reason`), at most
    /// ``maxReportedFailures``; nil when intact. A damaged part that fails from entry 1 (the page of the signed heads,
    /// say) must not hide an entry rewritten further on.
    public var failures: [AuditFailure]?
    /// What "intact" means for this result: said with every result, so nobody reads more into it.
    public var proves = AuditVerification.withoutTrustedHead
    /// The log verified, when gateways sharing a database each keep one (their `audit.log_name`).
    public var log: String?
    /// On a gateway sharing its database: every gateway's log as shipped to it, each verified on its own (this
    /// gateway's among them, as shipped). The top-level fields are this gateway's own log file's.
    public var logs: [AuditVerification]?
    /// With ``logs``: whether this log and every one of them verified (a client must not read the top-level fields,
    /// this gateway's own file's, as the verdict on all).
    public var allLogsIntact: Bool?

    public static let withoutTrustedHead =
        "internal consistency only: the entries, the tree and the signed heads stored in this same file agree; "
        + "a log cut or rewritten by someone who also deleted or re-signed the later heads verifies too. Detecting that needs a "
        + "head kept elsewhere: verify with a trusted head (veil audit verify --trusted-head, or trusted_heads in POST /v1/audit/verify)"

    /// Failures reported beyond the first: enough for an officer to see every kind of damage, bounded for a file
    /// damaged throughout.
    public static let maxReportedFailures = 20

    /// Records what verification found: the lowest sequence number first (in the order found among equals), each
    /// failure once.
    mutating func report(_ found: [(Int64, String)]) {
        var seen = Set<AuditFailure>()
        let ordered = found.enumerated().sorted { ($0.element.0, $0.offset) < ($1.element.0, $1.offset) }
            .map { AuditFailure(sequence: $0.element.0, reason: $0.element.1) }
            .filter { seen.insert($0).inserted }
        guard let first = ordered.first else { return }
        firstBadSequence = first.sequence
        reason = first.reason
        failures = Array(ordered.prefix(Self.maxReportedFailures))
    }

    static func againstTrusted(_ size: Int64) -> String {
        "the first \(size) entries are exactly those the trusted head of size \(size) signed (not cut, rewritten, reordered or forked); "
            + "entries after it agree with the heads stored in this file only"
    }
}

/// One thing verification found wrong, named at the first entry it affects.
public struct AuditFailure: Sendable, Hashable, Codable {
    public var sequence: Int64
    public var reason: String

    public init(sequence: Int64, reason: String) {
        self.sequence = sequence
        self.reason = reason
    }
}

/// A proof that one entry is in the log: RFC 6962 inclusion of its leaf in the tree of a signed head.
public struct AuditInclusionProof: Sendable, Equatable, Codable {
    public var sequence: Int64
    /// 0-based leaf index (sequence - 1).
    public var leafIndex: Int64
    public var treeSize: Int64
    /// Base64 SHA-256(0x00 || the entry's 32-byte digest).
    public var leafHash: String
    /// Base64 hashes, from the leaf's sibling up.
    public var hashes: [String]
    /// The head of `treeSize` entries the proof leads to.
    public var checkpoint: AuditCheckpoint
    public var entry: AuditEntry
}

/// A proof that the tree of `from` entries is a prefix of the tree of `to` entries (RFC 6962 consistency).
public struct AuditConsistencyProof: Sendable, Equatable, Codable {
    public var from: Int64
    public var to: Int64
    /// Base64 hashes.
    public var hashes: [String]
    /// The signed head of `to` entries.
    public var checkpoint: AuditCheckpoint
    /// The signed head of `from` entries when the log signed one of that size.
    public var fromCheckpoint: AuditCheckpoint?
}

/// Why a proof could not be given: the request names something the log does not have.
public enum AuditProofError: Error, Equatable, Sendable, CustomStringConvertible {
    case noSuchEntry(Int64, entries: Int64)
    case noSuchHead(Int64, newest: Int64)
    case invalidRange(String)

    public var description: String {
        switch self {
        case let .noSuchEntry(seq, entries): "the log has no entry \(seq) (it holds \(entries))"
        case let .noSuchHead(size, newest): "the log signed no head of size \(size); the newest covers \(newest) entries"
        case let .invalidRange(why): why
        }
    }
}

/// Read-only access to an audit database: query, verify, export. Works on a copy of the file too.
public struct AuditReader: Sendable {
    let store: Store

    init(store: Store) { self.store = store }

    /// Opens an audit database for reading (it must exist).
    public init(path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else {
            throw AuditError("no audit log at \(path); check --data-dir")
        }
        store = try Store(path: path, migrations: [AuditLog.Migrations()])
    }

    /// Matching entries by a scan in sequence order (``AuditIndex`` answers subject, actor and time queries without one).
    /// - Parameter through: the last sequence number to consider.
    public func query(_ q: AuditQuery, through: Int64? = nil) throws -> [AuditEntry] {
        var clauses = ["seq > ?"]
        var arguments: [(any DatabaseValueConvertible)?] = [q.after]
        if let through {
            clauses.append("seq <= ?")
            arguments.append(through)
        }
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

    /// The signed tree heads stored in the log, smallest first (every row, however edited: verify reads these).
    public func checkpoints() throws -> [AuditCheckpoint] {
        try store.pool.read { db in try Row.fetchAll(db, sql: "SELECT size, root, at, note FROM tree_heads ORDER BY size").map(Self.head) }
    }

    /// The signed tree heads larger than `size`, smallest first.
    public func checkpoints(after size: Int64) throws -> [AuditCheckpoint] {
        try store.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT size, root, at, note FROM tree_heads WHERE size > ? ORDER BY size", arguments: [size]).map(Self.head)
        }
    }

    /// The newest signed tree head; nil before the first.
    public func newestCheckpoint() throws -> AuditCheckpoint? {
        try store.pool.read { try Self.newestHead(in: $0) }
    }

    static func newestHead(in db: Database) throws -> AuditCheckpoint? {
        try Row.fetchOne(db.cachedStatement(sql: "SELECT size, root, at, note FROM tree_heads ORDER BY size DESC LIMIT 1")).map(head)
    }

    static func head(_ row: Row) -> AuditCheckpoint {
        // Read without trapping on an edited row's types: verify names what is wrong with it.
        AuditCheckpoint(
            size: Int64.fromDatabaseValue(row[0] as DatabaseValue) ?? 0,
            rootHash: (Data.fromDatabaseValue(row[1] as DatabaseValue) ?? Data()).base64EncodedString(),
            at: Int64.fromDatabaseValue(row[2] as DatabaseValue) ?? 0, note: String.fromDatabaseValue(row[3] as DatabaseValue) ?? "")
    }

    func legacyCheckpoints() throws -> [LegacyCheckpoint] {
        try store.pool.read { db in
            // Read without trapping on an edited row's types: a wrong value fails its signature instead.
            try Row.fetchAll(db, sql: "SELECT seq, head_hash, at, signature FROM checkpoints ORDER BY seq").map {
                LegacyCheckpoint(
                    sequence: Int64.fromDatabaseValue($0[0] as DatabaseValue) ?? 0,
                    headHash: String.fromDatabaseValue($0[1] as DatabaseValue) ?? "",
                    at: Int64.fromDatabaseValue($0[2] as DatabaseValue) ?? 0,
                    signature: String.fromDatabaseValue($0[3] as DatabaseValue) ?? "")
            }
        }
    }

    /// The inclusion proof of entry `sequence` in the signed head of `treeSize` entries (the newest head when nil).
    public func inclusionProof(sequence: Int64, treeSize: Int64? = nil) throws -> AuditInclusionProof {
        try store.pool.read { db in
            let entries = try Int64.fetchOne(db, sql: "SELECT CAST(MAX(seq) AS INTEGER) FROM entries") ?? 0
            guard sequence >= 1, sequence <= entries,
                let row = try Row.fetchOne(db, sql: "SELECT \(Self.columns) FROM entries WHERE seq = ?", arguments: [sequence])
            else {
                throw AuditProofError.noSuchEntry(sequence, entries: entries)
            }
            let head = try Self.signedHead(size: treeSize, in: db)
            guard sequence <= head.size else {
                throw AuditProofError.invalidRange("entry \(sequence) is after the head of size \(head.size); ask for a larger tree_size")
            }
            let leaf = try AuditTree.leaves(from: sequence - 1, count: 1, in: db)[0]
            let path = try AuditTree.inclusionProof(index: sequence - 1, size: head.size, in: db)
            return AuditInclusionProof(
                sequence: sequence, leafIndex: sequence - 1, treeSize: head.size, leafHash: Data(leaf.bytes).base64EncodedString(),
                hashes: path.map { Data($0).base64EncodedString() }, checkpoint: head, entry: Self.entryByIndex(row))
        }
    }

    /// The consistency proof from the tree of `from` entries to the signed head of `to` entries (the newest when nil).
    public func consistencyProof(from: Int64, to: Int64? = nil) throws -> AuditConsistencyProof {
        guard from >= 1 else { throw AuditProofError.invalidRange("from must be a tree size of at least 1, found \(from)") }
        return try store.pool.read { db in
            let head = try Self.signedHead(size: to, in: db)
            guard from <= head.size else {
                throw AuditProofError.invalidRange("from must be between 1 and the head's size \(head.size), found \(from)")
            }
            let path = try AuditTree.consistencyProof(from: from, size: head.size, in: db)
            let fromHead = try Row.fetchOne(db, sql: "SELECT size, root, at, note FROM tree_heads WHERE size = ?", arguments: [from]).map(Self.head)
            return AuditConsistencyProof(
                from: from, to: head.size, hashes: path.map { Data($0).base64EncodedString() }, checkpoint: head,
                fromCheckpoint: fromHead)
        }
    }

    private static func signedHead(size: Int64?, in db: Database) throws -> AuditCheckpoint {
        let newest = try newestHead(in: db)
        guard let size else {
            guard let newest else { throw AuditProofError.noSuchHead(0, newest: 0) }
            return newest
        }
        guard let head = try Row.fetchOne(db, sql: "SELECT size, root, at, note FROM tree_heads WHERE size = ?", arguments: [size]).map(Self.head)
        else {
            throw AuditProofError.noSuchHead(size, newest: newest?.size ?? 0)
        }
        return head
    }

    static let columns = "seq, at, actor, role, action, resource, subject_token, purpose, outcome, reason, request_id, prev_hash, hash"

    /// Reads a row selected with ``columns`` by position (faster than by name on a million rows). Never traps on a
    /// value of the wrong type (a table edited on disk): such a field reads as empty or 0, and verify names the entry.
    static func entryByIndex(_ row: Row) -> AuditEntry {
        func text(_ i: Int) -> String { String.fromDatabaseValue(row[i] as DatabaseValue) ?? "" }
        func optional(_ i: Int) -> String? { String.fromDatabaseValue(row[i] as DatabaseValue) }
        func integer(_ i: Int) -> Int64 { Int64.fromDatabaseValue(row[i] as DatabaseValue) ?? 0 }
        return AuditEntry(
            sequence: integer(0), at: integer(1),
            record: AuditRecord(
                actor: text(2), role: text(3), action: text(4), resource: text(5), subjectToken: optional(6), purpose: optional(7),
                outcomeText: text(8), reason: text(9), requestID: text(10)),
            previousHash: text(11), hash: text(12))
    }

    static func entry(_ row: Row) -> AuditEntry {
        func text(_ name: String) -> String? { String.fromDatabaseValue(row[name] as DatabaseValue) }
        func integer(_ name: String) -> Int64 { Int64.fromDatabaseValue(row[name] as DatabaseValue) ?? 0 }
        return AuditEntry(
            sequence: integer("seq"), at: integer("at"),
            record: AuditRecord(
                actor: text("actor") ?? "", role: text("role") ?? "", action: text("action") ?? "", resource: text("resource") ?? "",
                subjectToken: text("subject_token"), purpose: text("purpose"), outcomeText: text("outcome") ?? "",
                reason: text("reason") ?? "", requestID: text("request_id") ?? ""),
            previousHash: text("prev_hash") ?? "", hash: text("hash") ?? "")
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
