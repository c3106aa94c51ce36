import Foundation
import GRDB
import Storage
import Vault

/// The tamper-evident access log, in its own database file.
///
/// Append-only: triggers refuse UPDATE and DELETE, and no code path issues them. Appends are group-committed:
/// callers that arrive while a transaction is being written share the next one, and each caller resumes
/// only once its entry is durable (synchronous = FULL).
///
/// A serial dispatch queue writing the batches (instead of this actor feeding GRDB's async writes) was measured
/// under the serving load and was slower, with a worse p99.
///
/// The entries table has no secondary index on purpose: an index on random subject tokens turns every append
/// into a random page write, which cut append throughput by more than half when measured. Compliance queries
/// scan in sequence order instead (about half a second per million entries).
public actor AuditLog {
    public struct Migrations: MigrationSet {
        public init() {}
        public func register(in migrator: inout DatabaseMigrator) {
            migrator.registerMigration("audit.v1.entries") { db in
                try db.execute(sql: """
                    CREATE TABLE entries (
                        seq INTEGER PRIMARY KEY,
                        at INTEGER NOT NULL,
                        actor TEXT NOT NULL,
                        role TEXT NOT NULL,
                        action TEXT NOT NULL,
                        resource TEXT NOT NULL,
                        subject_token TEXT,
                        purpose TEXT,
                        outcome TEXT NOT NULL,
                        reason TEXT NOT NULL,
                        request_id TEXT NOT NULL,
                        prev_hash TEXT NOT NULL,
                        hash TEXT NOT NULL
                    );
                    CREATE TABLE checkpoints (
                        seq INTEGER PRIMARY KEY,
                        head_hash TEXT NOT NULL,
                        at INTEGER NOT NULL,
                        signature TEXT NOT NULL
                    );
                    CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                    CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                    CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                    CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                    """)
            }
        }
    }

    public static let genesisHash = String(repeating: "0", count: 64)

    public nonisolated let store: Store
    private let signer: SigningKeyPair
    private let checkpointInterval: Int64
    private let now: @Sendable () -> Date
    private var headSequence: Int64
    private var lastCheckpoint: Int64
    private var queue: [(AuditRecord, CheckedContinuation<AuditEntry, any Error>)] = []
    private var flushing = false

    /// Opens (creating) the audit database at `path`.
    /// - Parameters:
    ///   - checkpointInterval: sign a checkpoint every this many entries.
    ///   - now: the clock, injected for tests.
    ///   - fullSync: fsync every commit (survives power loss); false keeps WAL's synchronous = NORMAL, which
    ///     survives a killed process but may lose the newest commits to a power cut.
    public init(path: String, signer: SigningKeyPair, checkpointInterval: Int64 = 1000, fullSync: Bool = true,
                now: @escaping @Sendable () -> Date = Date.init) throws {
        // Checkpoints run beside the writer (every 250 ms); the autocheckpoint, in the commit path, is a backstop.
        store = try Store(path: path, migrations: [Migrations()],
                          configuration: .init(fullSync: fullSync, walAutocheckpointPages: 16_000, backgroundCheckpointInterval: 0.25))
        self.signer = signer
        self.checkpointInterval = checkpointInterval
        self.now = now
        let head = try store.pool.read { db in try Row.fetchOne(db, sql: "SELECT seq FROM entries ORDER BY seq DESC LIMIT 1") }
        headSequence = head?["seq"] ?? 0
        lastCheckpoint = try store.pool.read { db in try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM checkpoints") } ?? 0
    }

    /// Appends one entry and returns once it is durable.
    @discardableResult
    public func append(_ record: AuditRecord) async throws -> AuditEntry {
        try await withCheckedThrowingContinuation { continuation in
            queue.append((record, continuation))
            if !flushing {
                flushing = true
                Task { await self.flush() }
            }
        }
    }

    /// Writes queued entries in as few transactions as the arrival pattern allows.
    ///
    /// The chain head is read inside each write transaction, not trusted from memory: another process (the
    /// command line adding a principal, say) may have appended since.
    private func flush() async {
        while !queue.isEmpty {
            let batch = queue
            queue = []
            let records = batch.map(\.0)
            let at = Int64(now().timeIntervalSince1970 * 1000)
            let signer = self.signer, interval = self.checkpointInterval
            let t0 = DispatchTime.now().uptimeNanoseconds
            do {
                let (entries, checkpoint) = try await store.pool.write { db -> ([AuditEntry], AuditCheckpoint?) in
                    let head = try Row.fetchOne(db.cachedStatement(sql: "SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1"))
                    var sequence: Int64 = head?["seq"] ?? 0
                    var previous: String = head?["hash"] ?? Self.genesisHash
                    let headBefore = sequence
                    var entries: [AuditEntry] = []
                    entries.reserveCapacity(records.count)
                    for record in records {
                        sequence += 1
                        let hash = AuditEntry.computeHash(sequence: sequence, at: at, record: record, previousHash: previous)
                        let entry = AuditEntry(sequence: sequence, at: at, record: record, previousHash: previous, hash: hash)
                        try Self.insert(entry, in: db)
                        entries.append(entry)
                        previous = hash
                    }
                    var checkpoint: AuditCheckpoint?
                    // Sign when this batch crosses a multiple of the interval.
                    if sequence / interval > headBefore / interval {
                        checkpoint = Self.makeCheckpoint(sequence: sequence, head: previous, at: at, signer: signer)
                        try Self.insert(checkpoint!, in: db)
                    }
                    return (entries, checkpoint)
                }
                headSequence = entries.last?.sequence ?? headSequence
                if let checkpoint { lastCheckpoint = checkpoint.sequence }
                for (i, (_, continuation)) in batch.enumerated() { continuation.resume(returning: entries[i]) }
            } catch {
                for (_, continuation) in batch { continuation.resume(throwing: AuditError("audit append failed: \(error)")) }
            }
            writeNanos += DispatchTime.now().uptimeNanoseconds - t0
            batches += 1
            entriesWritten += batch.count
        }
        flushing = false
    }

    static func makeCheckpoint(sequence: Int64, head: String, at: Int64, signer: SigningKeyPair) -> AuditCheckpoint {
        var cp = AuditCheckpoint(sequence: sequence, headHash: head, at: at, signature: "")
        cp.signature = signer.sign(cp.message).hexString
        return cp
    }

    /// Signs a checkpoint over the current head (at shutdown, say). No-op when the head is already checkpointed.
    @discardableResult
    public func checkpoint() async throws -> AuditCheckpoint? {
        let signer = self.signer
        let at = Int64(now().timeIntervalSince1970 * 1000)
        let cp = try await store.pool.write { db -> AuditCheckpoint? in
            guard let head = try Row.fetchOne(db.cachedStatement(sql: "SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1")) else { return nil }
            let seq: Int64 = head["seq"]
            guard seq > (try Int64.fetchOne(db.cachedStatement(sql: "SELECT MAX(seq) FROM checkpoints")) ?? 0) else { return nil }
            let cp = Self.makeCheckpoint(sequence: seq, head: head["hash"], at: at, signer: signer)
            try Self.insert(cp, in: db)
            return cp
        }
        if let cp {
            lastCheckpoint = cp.sequence
            headSequence = max(headSequence, cp.sequence)
        }
        return cp
    }

    public var stats: (batches: Int, entries: Int, writeNanos: UInt64) { (batches, entriesWritten, writeNanos) }
    private var batches = 0
    private var entriesWritten = 0
    private var writeNanos: UInt64 = 0

    /// The number of entries.
    public var count: Int64 { headSequence }

    static func insert(_ e: AuditEntry, in db: Database) throws {
        let r = e.record
        // A cached statement: compiled once per connection, not once per entry.
        let statement = try db.cachedStatement(sql: """
            INSERT INTO entries (seq, at, actor, role, action, resource, subject_token, purpose, outcome, reason, request_id, prev_hash, hash)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        try statement.execute(arguments: [e.sequence, e.at, r.actor, r.role, r.action, r.resource, r.subjectToken, r.purpose, r.outcome, r.reason, r.requestID, e.previousHash, e.hash])
    }

    static func insert(_ c: AuditCheckpoint, in db: Database) throws {
        try db.execute(sql: "INSERT INTO checkpoints (seq, head_hash, at, signature) VALUES (?, ?, ?, ?)",
                       arguments: [c.sequence, c.headHash, c.at, c.signature])
    }
}
