import Foundation
import GRDB
import SQLiteStorage
import GRDBSQLite
import Storage
import Synchronization
import Vault

/// SQLite copies the bound bytes (SQLITE_TRANSIENT).
private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// The tamper-evident access log, in its own database file.
///
/// Append-only: triggers refuse UPDATE and DELETE, and no code path issues them. Appends are group-committed:
/// callers that arrive while a transaction is being written share the next one, and each caller resumes
/// only once its entry is durable: on disk, surviving a power cut, not only a killed process.
///
/// One serial queue drains the waiting appends and writes each batch on its own thread, synchronously; a caller
/// costs one suspension and one resumption. The fsync is pipelined: batches commit without one (WAL,
/// synchronous = NORMAL) and a second queue runs `fdatasync` on the WAL file back to back, resuming the callers
/// of every batch committed before that sync began. The writer never waits for the disk, and one sync covers
/// all batches committed while the previous one ran. Two syncs may run at once, so a batch committed just after
/// one began does not wait for it to end before its own starts. SQLite's synchronous = FULL, a sync inside every
/// commit, held the writer for each one. An actor handing batches to GRDB's asynchronous writes added an actor hop
/// per append and three thread hand-offs per batch. (The measurements behind these choices: docs/design-notes.md.)
///
/// The entries table has no secondary index on purpose: an index on random subject tokens turns every append
/// into a random page write. Compliance queries use the index of ``AuditIndex``, a file of its own.
public final class AuditLog: Sendable {
    public struct Migrations: MigrationSet {
        public init() {}
        public func register(in migrator: inout DatabaseMigrator) {
            migrator.registerMigration("audit.v1.entries") { db in
                try db.execute(
                    sql: """
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
            migrator.registerMigration("audit.v2.tree") { db in
                try db.execute(
                    sql: """
                        CREATE TABLE tree_nodes (
                            level INTEGER NOT NULL,
                            idx INTEGER NOT NULL,
                            hash BLOB NOT NULL,
                            PRIMARY KEY (level, idx)
                        ) WITHOUT ROWID;
                        CREATE TABLE tree_heads (
                            size INTEGER PRIMARY KEY,
                            root BLOB NOT NULL,
                            at INTEGER NOT NULL,
                            note TEXT NOT NULL
                        );
                        CREATE TRIGGER tree_heads_no_update BEFORE UPDATE ON tree_heads BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                        CREATE TRIGGER tree_heads_no_delete BEFORE DELETE ON tree_heads BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                        """)
                // A log written before the tree: its stored nodes, so that proofs over old entries are cheap.
                let count = try Int64.fetchOne(db, sql: "SELECT CAST(MAX(seq) AS INTEGER) FROM entries") ?? 0
                try AuditTree.extend(from: 0, to: count, in: db)
            }
        }
    }

    public static let genesisHash = String(repeating: "0", count: 64)
    /// A tree head is signed once this many entries follow the last one, unless the log is opened with another
    /// interval: on a busy server (5,000 requests/s) one head every 20 s; an idle one signs on age instead.
    public static let defaultCheckpointInterval: Int64 = 100_000
    /// A head is signed when entries have waited this long without one (checked by a timer).
    public static let defaultCheckpointMaxAge: Duration = .seconds(30)

    let store: Store
    /// Signs tree heads as C2SP checkpoints.
    public let heads: HeadSigner
    private let checkpointInterval: Int64
    // A dispatch source is thread-safe; the property is set once in init.
    nonisolated(unsafe) private let ageTimer: (any DispatchSourceTimer)?
    private let now: @Sendable () -> Date
    private let writer = DispatchQueue(label: "veil.audit.writer", qos: .userInitiated)
    private let syncer = DispatchQueue(label: "veil.audit.sync", qos: .userInitiated, attributes: .concurrent)
    /// The WAL file, opened for `fdatasync` (which acts on the file, whatever descriptor names it); -1 when
    /// appends need only survive a killed process. SQLite removes the WAL only when its last connection closes,
    /// and the store's writer stays open as long as this log, so the descriptor keeps naming the live WAL.
    private let walDescriptor: Int32
    /// Makes the WAL durable: `fdatasync`, or a stand-in that tests use to hold or observe the sync.
    private let syncFile: @Sendable (Int32) -> Int32

    private struct Pending {
        let record: AuditRecord
        let continuation: UnsafeContinuation<AuditEntry, any Error>
        /// When it was appended (`DispatchTime` nanoseconds), for ``Stats/durableWaitNanos``.
        let appended: UInt64
    }
    private typealias Committed = (continuation: UnsafeContinuation<AuditEntry, any Error>, entry: AuditEntry, appended: UInt64)
    private struct State {
        var pending: [Pending] = []
        var draining = false
        var headSequence: Int64
        /// The last entry known durable (fsynced, or committed when the log does not sync).
        var durableSequence: Int64
        /// The size of the newest signed tree head this process knows of.
        var signedSize: Int64
        var stats = Stats()
        /// Committed, waiting for the WAL's next fdatasync.
        var unsynced: [Committed] = []
        /// Sync loops running (at most two).
        var syncing = 0
    }
    private let state: Mutex<State>

    /// Opens (creating) the audit database at `path`.
    /// - Parameters:
    ///   - origin: the log's name in its signed heads (and its key's name); by default derived from the public key.
    ///   - checkpointInterval: sign a tree head once this many entries follow the last one.
    ///   - checkpointMaxAge: sign a tree head once entries have waited this long for one; nil: only by count and
    ///     through ``checkpoint()``.
    ///   - now: the clock, injected for tests.
    ///   - fullSync: an append returns once the WAL is fsynced past it (survives power loss); false returns on
    ///     commit (WAL, synchronous = NORMAL), which survives a killed process but may lose the newest commits to a
    ///     power cut.
    public convenience init(
        path: String, signer: SigningKeyPair, origin: String? = nil,
        checkpointInterval: Int64 = AuditLog.defaultCheckpointInterval,
        checkpointMaxAge: Duration? = AuditLog.defaultCheckpointMaxAge,
        fullSync: Bool = true, now: @escaping @Sendable () -> Date = Date.init
    ) throws {
        try self.init(
            path: path, signer: signer, origin: origin, checkpointInterval: checkpointInterval, checkpointMaxAge: checkpointMaxAge,
            fullSync: fullSync, now: now, sync: { fdatasync($0) })
    }

    /// As the public initializer, with `sync` called in place of `fdatasync` on the WAL's descriptor (tests hold it
    /// to check that no caller resumes before the sync that covers its entry has returned).
    init(
        path: String, signer: SigningKeyPair, origin: String? = nil, checkpointInterval: Int64, checkpointMaxAge: Duration? = nil,
        fullSync: Bool, now: @escaping @Sendable () -> Date, sync: @escaping @Sendable (Int32) -> Int32
    ) throws {
        // Checkpoints run beside the writer (every 250 ms); the autocheckpoint, in the commit path, is a backstop.
        // Commits never sync (NORMAL); with fullSync the syncer does, beside the writer. Checkpoints still sync
        // the WAL before copying it and the main file after, so a restarted WAL loses nothing unsynced.
        store = try Store(
            path: path, migrations: [Migrations()],
            configuration: .init(
                fullSync: false, walAutocheckpointPages: 16_000, backgroundCheckpointInterval: 0.25,
                walCyclePages: 12_000))
        if fullSync {
            walDescriptor = open(path + "-wal", O_RDONLY | O_CLOEXEC)
            guard walDescriptor >= 0 else { throw AuditError("cannot open \(path)-wal to sync it (errno \(errno))") }
        } else {
            walDescriptor = -1
        }
        syncFile = sync
        heads = try HeadSigner(origin: origin ?? HeadSigner.defaultOrigin(for: signer.publicKey), keys: signer)
        self.checkpointInterval = max(1, checkpointInterval)
        self.now = now
        let (head, signed) = try store.pool.read { db in
            (
                try Int64.fetchOne(db, sql: "SELECT CAST(MAX(seq) AS INTEGER) FROM entries") ?? 0,
                try Int64.fetchOne(db, sql: "SELECT CAST(MAX(size) AS INTEGER) FROM tree_heads") ?? 0
            )
        }
        state = Mutex(State(headSequence: head, durableSequence: head, signedSize: signed))
        if let checkpointMaxAge {
            // On the writer's queue: between batches, never inside one.
            let timer = DispatchSource.makeTimerSource(queue: writer)
            let seconds = max(0.01, Double(checkpointMaxAge.components.seconds) + Double(checkpointMaxAge.components.attoseconds) / 1e18)
            timer.schedule(deadline: .now() + seconds, repeating: seconds, leeway: .milliseconds(100))
            ageTimer = timer
            timer.setEventHandler { [weak self] in
                guard let self, self.state.withLock({ $0.headSequence > $0.signedSize }) else { return }
                _ = try? self.signCheckpoint()  // already on the writer queue
            }
            timer.resume()
        } else {
            ageTimer = nil
        }
        // What a killed process committed may still be only in the page cache: synced once, it is durable like the rest.
        // (The disk's own call, not the hook tests observe appends' syncs with.)
        if walDescriptor >= 0, fdatasync(walDescriptor) != 0 { throw AuditError("cannot sync \(path)-wal (errno \(errno))") }
    }

    /// Appends one entry and returns once it is durable.
    @discardableResult
    public func append(_ record: AuditRecord) async throws -> AuditEntry {
        try await withUnsafeThrowingContinuation { continuation in
            let start = state.withLock { state -> Bool in
                state.pending.append(Pending(record: record, continuation: continuation, appended: DispatchTime.now().uptimeNanoseconds))
                guard !state.draining else { return false }
                state.draining = true
                return true
            }
            if start { writer.async { self.drain() } }
        }
    }

    /// Writes waiting entries until none are left, a batch per transaction: whatever arrived while the previous
    /// transaction was being written.
    private func drain() {
        while true {
            let batch = state.withLock { state -> [Pending] in
                let batch = state.pending
                state.pending.removeAll(keepingCapacity: true)
                if batch.isEmpty { state.draining = false }
                return batch
            }
            if batch.isEmpty { return }
            write(batch)
        }
    }

    deinit {
        ageTimer?.cancel()
        if walDescriptor >= 0 { close(walDescriptor) }
    }

    /// The chain head is read inside each write transaction, not trusted from memory: another process (the
    /// command line adding a principal, say) may have appended since.
    private func write(_ batch: [Pending]) {
        let at = Int64(now().timeIntervalSince1970 * 1000)
        let heads = self.heads, interval = self.checkpointInterval
        let t0 = DispatchTime.now().uptimeNanoseconds
        do {
            let (entries, signed) = try store.pool.writeWithoutTransaction { db -> ([AuditEntry], Int64?) in
                // BEGIN and COMMIT as cached statements: GRDB's transaction compiles both for every batch.
                try Self.step(db.cachedStatement(sql: "BEGIN IMMEDIATE TRANSACTION"), in: db)
                do {
                    let result = try Self.insertBatch(batch, at: at, heads: heads, interval: interval, in: db)
                    try Self.step(db.cachedStatement(sql: "COMMIT TRANSACTION"), in: db)
                    return result
                } catch {
                    if !db.isInsideTransaction { throw error }
                    try? db.execute(sql: "ROLLBACK TRANSACTION")
                    throw error
                }
            }
            let committed = DispatchTime.now().uptimeNanoseconds
            let syncs = walDescriptor >= 0
            // Without fsync an entry is as durable as it gets once committed.
            let waited = syncs ? 0 : batch.reduce(0) { $0 + (committed - $1.appended) }
            let startSync = state.withLock { state -> Bool in
                state.headSequence = entries.last?.sequence ?? state.headSequence
                if let signed { state.signedSize = max(state.signedSize, signed) }
                state.stats.batches += 1
                state.stats.entries += batch.count
                state.stats.writeNanos += committed - t0
                state.stats.durableWaitNanos += waited
                guard syncs else {
                    state.durableSequence = state.headSequence
                    return false
                }
                for (pending, entry) in zip(batch, entries) { state.unsynced.append((pending.continuation, entry, pending.appended)) }
                guard state.syncing < 2 else { return false }
                state.syncing += 1
                return true
            }
            if !syncs {
                for (pending, entry) in zip(batch, entries) { pending.continuation.resume(returning: entry) }
            } else if startSync {
                syncer.async { self.syncCommitted() }
            }
        } catch {
            let full = (error as? DatabaseError)?.resultCode == .SQLITE_FULL
            for pending in batch { pending.continuation.resume(throwing: AuditError("audit append failed: \(error)", diskFull: full)) }
        }
    }

    /// Syncs the WAL until no committed entry waits: each `fdatasync` starts after the commits it resumes. Runs on
    /// up to two threads at once.
    private func syncCommitted() {
        while true {
            let ready = state.withLock { state -> [Committed] in
                let ready = state.unsynced
                state.unsynced.removeAll(keepingCapacity: true)
                if ready.isEmpty { state.syncing -= 1 }
                return ready
            }
            if ready.isEmpty { return }
            do {
                try syncWAL()
                let synced = DispatchTime.now().uptimeNanoseconds
                let waited = ready.reduce(0) { $0 + (synced - $1.appended) }
                state.withLock {
                    $0.stats.syncs += 1; $0.stats.durableWaitNanos += waited
                    // The sync covers every commit before it, these and any a concurrent loop still syncs.
                    $0.durableSequence = max($0.durableSequence, ready.map { $0.entry.sequence }.max() ?? 0)
                }
                for (continuation, entry, _) in ready { continuation.resume(returning: entry) }
            } catch {
                // Committed but not known durable: the callers fail rather than claim it.
                for (continuation, _, _) in ready { continuation.resume(throwing: error) }
            }
        }
    }

    private func syncWAL() throws {
        guard syncFile(walDescriptor) == 0 else {
            let code = errno
            throw AuditError("audit log fsync failed (errno \(code))", diskFull: code == ENOSPC)
        }
    }

    /// Chains and inserts one batch after the head read in this transaction, extends the tree, and signs a tree head
    /// when `interval` entries follow the last one. Returns the entries and the size of the head signed, if any.
    private static func insertBatch(
        _ batch: [Pending], at: Int64, heads: HeadSigner, interval: Int64, in db: Database
    ) throws -> ([AuditEntry], Int64?) {
        let head = try db.cachedStatement(sql: "SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1")
        let h = head.sqliteStatement
        sqlite3_reset(h)
        var sequence: Int64 = 0
        var previous = Self.genesisHash
        switch sqlite3_step(h) {
        case SQLITE_ROW:
            sequence = sqlite3_column_int64(h, 0)
            previous = String(cString: sqlite3_column_text(h, 1))  // NOT NULL in the schema
        case SQLITE_DONE:
            break
        case let code:
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: db.lastErrorMessage)
        }
        sqlite3_reset(h)
        let headBefore = sequence
        var entries: [AuditEntry] = []
        entries.reserveCapacity(batch.count)
        for pending in batch {
            sequence += 1
            let hash = AuditEntry.computeHash(sequence: sequence, at: at, record: pending.record, previousHash: previous)
            let entry = AuditEntry(sequence: sequence, at: at, record: pending.record, previousHash: previous, hash: hash)
            try insert(entry, in: db)
            entries.append(entry)
            previous = hash
        }
        try AuditTree.extend(from: headBefore, to: sequence, in: db)
        // Read here, not trusted from memory: another process may have signed since.
        let signed = try Int64.fetchOne(db.cachedStatement(sql: "SELECT CAST(MAX(size) AS INTEGER) FROM tree_heads")) ?? 0
        guard sequence - signed >= interval else { return (entries, nil) }
        try insertHead(size: sequence, at: at, heads: heads, in: db)
        return (entries, sequence)
    }

    /// Signs and stores the head of the first `size` entries.
    @discardableResult
    static func insertHead(size: Int64, at: Int64, heads: HeadSigner, in db: Database) throws -> AuditCheckpoint {
        let root = try AuditTree.root(size: size, in: db)
        let cp = AuditCheckpoint(
            size: size, rootHash: Data(root.bytes).base64EncodedString(), at: at, note: heads.sign(size: size, root: root.bytes, at: at))
        try db.execute(
            sql: "INSERT INTO tree_heads (size, root, at, note) VALUES (?, ?, ?, ?)",
            arguments: [size, Data(root.bytes), at, cp.note])
        return cp
    }

    /// Runs a statement that returns no rows (bindings, if any, already made) and leaves it reset for its next use.
    private static func step(_ statement: Statement, in db: Database) throws {
        let s = statement.sqliteStatement
        sqlite3_reset(s)  // keeps the bindings
        let code = sqlite3_step(s)
        guard code == SQLITE_DONE else { throw DatabaseError(resultCode: ResultCode(rawValue: code), message: db.lastErrorMessage) }
        sqlite3_reset(s)
    }

    /// Signs a tree head over every entry so far (at shutdown, before an export, for a proof of a newer entry) and
    /// returns it once durable. Returns the newest head unchanged when it already covers every entry, or when it was
    /// signed less than `minimumInterval` ago (so that callers who may ask often, a witness polling or a client
    /// asking for proofs, add at most one head per interval); nil for an empty log. Runs on the log's writer
    /// queue, between batches, never on the caller's thread.
    @discardableResult
    public func checkpoint(minimumInterval: Duration = .zero) async throws -> AuditCheckpoint? {
        try await onWriter { try self.signCheckpoint(minimumInterval: minimumInterval) }
    }

    /// Signs a head of the first `size` entries unless the log holds one (a log's first shipment to a shared database
    /// carries a head over what it ships when the log's own first head lies further), and returns it once durable; nil
    /// when the log holds fewer entries. A head over a prefix is as valid as any: verifiers check each against the
    /// tree of its size. Runs on the log's writer queue, between batches.
    public func checkpoint(size: Int64) async throws -> AuditCheckpoint? {
        try await onWriter {
            try self.signHead { db, at in
                if let held = try Row.fetchOne(db, sql: "SELECT size, root, at, note FROM tree_heads WHERE size = ?", arguments: [size]) {
                    return (AuditReader.head(held), false)
                }
                let count = try Int64.fetchOne(db.cachedStatement(sql: "SELECT CAST(MAX(seq) AS INTEGER) FROM entries")) ?? 0
                guard size > 0, size <= count else { return (nil, false) }
                return (try Self.insertHead(size: size, at: at, heads: self.heads, in: db), true)
            }
        }
    }

    /// Runs `body` on the writer's queue (between batches, never on the caller's thread).
    private func onWriter<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            writer.async { continuation.resume(with: Result { try body() }) }
        }
    }

    private func signCheckpoint(minimumInterval: Duration = .zero) throws -> AuditCheckpoint? {
        let spacing = minimumInterval.components.seconds * 1000 + minimumInterval.components.attoseconds / 1_000_000_000_000_000
        return try signHead { db, at in
            let size = try Int64.fetchOne(db.cachedStatement(sql: "SELECT CAST(MAX(seq) AS INTEGER) FROM entries")) ?? 0
            let newest = try AuditReader.newestHead(in: db)
            if let newest, newest.size >= size || at - newest.at < spacing { return (newest, false) }
            guard size > 0 else { return (nil, false) }
            return (try Self.insertHead(size: size, at: at, heads: self.heads, in: db), true)
        }
    }

    /// Runs `choose` in a write transaction, given the time of signing; it returns the head to answer with and whether
    /// it signed it. A head it signed is counted and made durable before it is returned.
    private func signHead(_ choose: (Database, Int64) throws -> (AuditCheckpoint?, signed: Bool)) throws -> AuditCheckpoint? {
        let at = Int64(now().timeIntervalSince1970 * 1000)
        let (cp, signed) = try store.pool.write { db in try choose(db, at) }
        if let cp {
            state.withLock {
                $0.headSequence = max($0.headSequence, cp.size); $0.signedSize = max($0.signedSize, cp.size)
            }
            if signed, walDescriptor >= 0 { try syncWAL() }
        }
        return cp
    }

    public typealias Stats = AuditStats

    public var stats: Stats { state.withLock { $0.stats } }

    /// The number of entries.
    public var count: Int64 { state.withLock { $0.headSequence } }

    /// The number of entries known durable: what may leave this file (shipping copies no entry a power cut could
    /// still take from it).
    public var durableCount: Int64 { state.withLock { $0.durableSequence } }

    static func insert(_ e: AuditEntry, in db: Database) throws {
        let r = e.record
        // A cached statement (compiled once per connection), bound through SQLite's C API: GRDB's argument
        // binding was a large share of the writer's time (docs/design-notes.md, "Measured hot spots").
        let statement = try db.cachedStatement(
            sql: """
                INSERT INTO entries (seq, at, actor, role, action, resource, subject_token, purpose, outcome, reason, request_id, prev_hash, hash)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
        let s = statement.sqliteStatement
        sqlite3_reset(s)
        sqlite3_bind_int64(s, 1, e.sequence)
        sqlite3_bind_int64(s, 2, e.at)
        func text(_ index: Int32, _ value: String?) {
            guard var value else { sqlite3_bind_null(s, index); return }
            _ = value.withUTF8 { sqlite3_bind_text(s, index, $0.baseAddress, Int32($0.count), transient) }
        }
        text(3, r.actor); text(4, r.role); text(5, r.action); text(6, r.resource); text(7, r.subjectToken); text(8, r.purpose)
        text(9, r.outcome); text(10, r.reason); text(11, r.requestID); text(12, e.previousHash); text(13, e.hash)
        defer { sqlite3_clear_bindings(s) }
        try step(statement, in: db)
    }

}

/// How appends were grouped since the log was opened: how well group commit and the pipelined fsync batch.
public struct AuditStats: Sendable, Equatable {
    /// Entries written by this process.
    public var entries = 0
    /// Write transactions (each a batch of entries).
    public var batches = 0
    /// WAL fsyncs that made committed entries durable (none when opened without `fullSync`).
    public var syncs = 0
    /// Time spent inside the write transactions.
    public var writeNanos: UInt64 = 0
    /// Summed over the entries: from the append to the entry being durable (committed, and fsynced when the
    /// log syncs). Per entry, the wait the log itself adds; a caller resumes after it, once a thread is free.
    public var durableWaitNanos: UInt64 = 0

    public init(entries: Int = 0, batches: Int = 0, syncs: Int = 0, writeNanos: UInt64 = 0, durableWaitNanos: UInt64 = 0) {
        self.entries = entries
        self.batches = batches
        self.syncs = syncs
        self.writeNanos = writeNanos
        self.durableWaitNanos = durableWaitNanos
    }
}
