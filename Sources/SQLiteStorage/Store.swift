import Foundation
import GRDB
import GRDBSQLite
import Storage
import Synchronization

/// A module's tables: a stable set of named migrations, never edited once shipped.
public protocol MigrationSet: Sendable {
    /// Registers this set's migrations, each under a name unique across Veil (prefix it with the module).
    func register(in migrator: inout DatabaseMigrator)
}

/// How a database file is opened.
public struct StoreConfiguration: Sendable {
    /// `FULL` makes every commit durable against power loss; `NORMAL` in WAL mode survives a process crash.
    public var fullSync: Bool
    /// How long a writer waits for a lock before failing.
    public var busyTimeout: TimeInterval
    /// Maximum concurrent readers.
    public var maximumReaders: Int
    /// Page cache per connection, in KiB.
    public var cacheKiB: Int
    /// WAL pages before SQLite checkpoints into the main file (in the committing writer's path).
    public var walAutocheckpointPages: Int
    /// When positive, a connection of its own checkpoints the WAL this often (seconds), so the copy into the
    /// main file and its fsync happen beside the writer instead of inside a commit; the autocheckpoint above
    /// stays as a backstop and then finds little left to copy.
    public var backgroundCheckpointInterval: TimeInterval
    /// Once the WAL holds this many pages (0: never), the background checkpointer also ends its cycle (see
    /// ``BackgroundCheckpointer``), so the WAL starts over before the writer's autocheckpoint would do it.
    public var walCyclePages: Int
    /// A second database file attached to every connection as the schema ``Store/keyStoreSchema``: the key store
    /// (wrapped per-subject data keys). It is a file of its own so that a backup of the data file holds ciphertext
    /// only, and erasure (deleting a key from this file) reaches every backup of the data. Always `FULL` sync.
    public var keyStorePath: String?

    public init(
        fullSync: Bool = true, busyTimeout: TimeInterval = 10, maximumReaders: Int = 8, cacheKiB: Int = 32 * 1024,
        walAutocheckpointPages: Int = 1000, backgroundCheckpointInterval: TimeInterval = 0, walCyclePages: Int = 0,
        keyStorePath: String? = nil
    ) {
        self.keyStorePath = keyStorePath
        self.fullSync = fullSync
        self.busyTimeout = busyTimeout
        self.maximumReaders = maximumReaders
        self.cacheKiB = cacheKiB
        self.walAutocheckpointPages = walAutocheckpointPages
        self.backgroundCheckpointInterval = backgroundCheckpointInterval
        self.walCyclePages = walCyclePages
    }
}

/// One SQLite database file in WAL mode, migrated on open.
///
/// Every connection runs with foreign keys on and `secure_delete` on, so deleted rows are zeroed in the
/// file rather than left in free pages.
public final class Store: Sendable {
    /// The underlying pool; modules use scoped `read { }` / `write { }` access only.
    public let pool: DatabasePool
    public let path: String
    /// The attached key store's file, when there is one (see ``StoreConfiguration/keyStorePath``).
    public let keyStorePath: String?
    /// Group-commits `fdatasync` of the WAL for writes that must survive a power cut although the store commits
    /// with `synchronous = NORMAL` (see ``syncWAL()``).
    public let walSyncer: WALSyncer
    private let fullSync: Bool
    /// The schema name the key store is attached under.
    public static let keyStoreSchema = "keystore"
    private let checkpointer: BackgroundCheckpointer?
    private let busyTimeout: TimeInterval
    /// A deferred ``scrubWAL(wait:retryInterval:)`` is being retried; `again`: another was deferred meanwhile,
    /// so a success the retrier sees may have come before that one's shredding.
    private let scrubRetry = Mutex((retrying: false, again: false))

    /// Opens (creating if needed) the database at `path` and applies `migrations` in order.
    public init(path: String, migrations: [any MigrationSet], configuration: StoreConfiguration = .init()) throws {
        try Self.createDirectory(of: path)
        let synchronous = configuration.fullSync ? "FULL" : "NORMAL"
        let keyStore = configuration.keyStorePath
        let config = Self.connectionConfiguration(configuration)
        do {
            pool = try DatabasePool(path: path, configuration: config)
            // Once more after opening: GRDB's pool switches the writer to WAL after `prepareDatabase` and sets
            // `synchronous = NORMAL` as it does, so a FULL asked for above would silently not hold.
            try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA main.synchronous = \(synchronous)")
                if keyStore != nil { try db.execute(sql: "PRAGMA \(Store.keyStoreSchema).synchronous = FULL") }
            }
        } catch {
            throw StorageError(.cannotOpen, "cannot open database \(path): \(Store.describe(error))")
        }
        self.path = path
        keyStorePath = keyStore
        walSyncer = WALSyncer(walPath: path + "-wal")
        fullSync = configuration.fullSync
        busyTimeout = configuration.busyTimeout
        var migrator = DatabaseMigrator()
        for set in migrations { set.register(in: &migrator) }
        if let keyStore { try Self.prepareKeyStore(keyStore, beside: path, in: pool) }
        do {
            try migrator.migrate(pool)
        } catch {
            throw StorageError(.migrationFailed, "migrating \(path) failed: \(Store.describe(error))")
        }
        // Restrict the files to the owner: they hold ciphertext, tokens and wrapped keys.
        for file in [path] + (keyStore.map { [$0] } ?? []) {
            for suffix in ["", "-wal", "-shm"] {
                _ = try? FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file + suffix)
            }
        }
        if configuration.backgroundCheckpointInterval > 0 {
            do {
                checkpointer = try BackgroundCheckpointer(
                    path: path, pool: pool, interval: configuration.backgroundCheckpointInterval,
                    cyclePages: configuration.walCyclePages, synchronous: synchronous)
            } catch {
                throw StorageError(.cannotOpen, "cannot open the checkpoint connection to \(path): \(Store.describe(error))")
            }
        } else {
            checkpointer = nil
        }
        if keyStore != nil {
            // The migration moved keys out of the data file: leave none of their old pages in its WAL either.
            try? checkpointAndTruncate()
        }
    }

    /// Creates the directory `path` lives in (owner only), if missing.
    static func createDirectory(of path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw StorageError(.cannotOpen, "cannot create data directory \(directory); check that its parent exists and is writable")
            }
        }
    }

    /// GRDB's configuration: busy timeout, readers, and the pragmas every connection runs (with the key store attached;
    /// its directory is created here, before the first connection attaches it).
    static func connectionConfiguration(_ configuration: StoreConfiguration) -> Configuration {
        var config = Configuration()
        config.busyMode = .timeout(configuration.busyTimeout)
        config.foreignKeysEnabled = true
        config.maximumReaderCount = configuration.maximumReaders
        let synchronous = configuration.fullSync ? "FULL" : "NORMAL"
        let cache = configuration.cacheKiB
        let autocheckpoint = configuration.walAutocheckpointPages
        let keyStore = configuration.keyStorePath
        if let keyStore {
            let keyDirectory = (keyStore as NSString).deletingLastPathComponent
            if !keyDirectory.isEmpty {
                try? FileManager.default.createDirectory(
                    atPath: keyDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            }
        }
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA wal_autocheckpoint = \(autocheckpoint)")
            try db.execute(sql: "PRAGMA secure_delete = ON")
            try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
            try db.execute(sql: "PRAGMA cache_size = -\(cache)")
            if let keyStore {
                let schema = Store.keyStoreSchema
                try db.execute(sql: "ATTACH DATABASE ? AS \(schema)", arguments: [keyStore])
                try db.execute(sql: "PRAGMA \(schema).secure_delete = ON")
                if !db.configuration.readonly {
                    // Keys are few and small: every change to them (a new subject, a shredding) is synced.
                    try db.execute(sql: "PRAGMA \(schema).journal_mode = WAL")
                    try db.execute(sql: "PRAGMA \(schema).synchronous = FULL")
                }
            }
        }
        return config
    }

    /// Refuses an empty key store beside a data file whose keys moved out, and creates the key store's tables.
    static func prepareKeyStore(_ keyStore: String, beside path: String, in pool: DatabasePool) throws {
        // ATTACH creates a missing file: an empty key store beside a data file whose keys already moved out means
        // the key store was deleted or replaced. Starting would make every subject unreadable without a word.
        let (movedOut, keyTables) = try pool.read { db -> (Bool, Int) in
            let tracked = try Bool.fetchOne(db, sql: "SELECT 1 FROM main.sqlite_master WHERE name = 'grdb_migrations'") == true
            let moved =
                try tracked
                && Bool.fetchOne(
                    db, sql: "SELECT 1 FROM grdb_migrations WHERE identifier = ?",
                    arguments: [SubjectKeyTables.keyStoreMigration]) == true
            return (moved, try Int.fetchOne(db, sql: "SELECT count(*) FROM \(Store.keyStoreSchema).sqlite_master") ?? 0)
        }
        guard !movedOut || keyTables > 0 else {
            throw StorageError(
                .cannotOpen,
                "the key store \(keyStore) is empty but \(path) is not: restore the key store from its backup "
                    + "(without it no subject's data can be opened), or start with an empty data directory")
        }
        do {
            try pool.write { db in try SubjectKeyTables.prepareKeyStore(in: db) }
        } catch {
            throw StorageError(.migrationFailed, "preparing the key store \(keyStore) failed: \(Store.describe(error))")
        }

    }

    /// Makes every transaction committed before this call durable against a power cut: one `fdatasync` of the WAL,
    /// shared with concurrent callers. A no-op for a store that syncs every commit (`fullSync`).
    public func syncWAL() async throws {
        guard !fullSync else { return }
        try await walSyncer.sync()
    }

    /// Moves everything in the WAL into the main file and truncates the WAL, so that no old page image
    /// (of a deleted key, say) remains in the `-wal` file.
    public func checkpointAndTruncate() throws {
        try pool.writeWithoutTransaction { db in
            try self.truncateAll(db)
        }
    }

    /// Truncating checkpoint of the data file and, when attached, of the key store: a shredded key's old page
    /// image lives in the key store's WAL.
    private func truncateAll(_ db: Database) throws {
        // The key store first, and whatever the data file's checkpoint says: a shredded key's old page image lives
        // in the key store's WAL, and a reader busy in the data file must not keep it there.
        var failure: (any Error)?
        if keyStorePath != nil {
            do { _ = try db.checkpoint(.truncate, on: Self.keyStoreSchema) } catch { failure = error }
        }
        do { _ = try db.checkpoint(.truncate, on: "main") } catch { failure = failure ?? error }
        if let failure { throw failure }
    }

    /// The same, for a request's task: it is suspended, not blocked, while the checkpoint waits and writes.
    public func checkpointAndTruncate() async throws {
        try await truncate(waiting: busyTimeout)
    }

    /// What ``scrubWAL(wait:retryInterval:)`` achieved.
    public enum WALScrub: Sendable, Equatable {
        /// The WAL is empty: no old page image is left in the `-wal` file.
        case done
        /// A reader kept the WAL busy; the scrub is retried in the background until it succeeds.
        case deferred(reason: String)
    }

    /// Checkpoints and truncates the WAL after an erasure, so that no old page image of what was shredded stays in
    /// the `-wal` file. A truncating checkpoint must wait for every reader to leave the WAL and holds writers back
    /// while it waits, so it waits at most `wait` seconds (not the busy timeout: a reader kept for 10 s would stall
    /// every write as long). If a reader is still there, the scrub is deferred: it is retried every
    /// `retryInterval` seconds, each try waiting at most 0.1 s, until one succeeds; ``walScrubPending`` says so
    /// meanwhile.
    public func scrubWAL(wait: TimeInterval = 1, retryInterval: TimeInterval = 1) async -> WALScrub {
        do {
            try await truncate(waiting: wait)
            return .done
        } catch {
            let start = scrubRetry.withLock { state -> Bool in
                if state.retrying { state.again = true; return false }
                state.retrying = true
                return true
            }
            if start {
                Task.detached { [self] in
                    while true {
                        try? await Task.sleep(for: .seconds(retryInterval))
                        guard (try? await truncate(waiting: 0.1)) != nil else { continue }
                        let finished = scrubRetry.withLock { state -> Bool in
                            if state.again { state.again = false; return false }
                            state.retrying = false
                            return true
                        }
                        if finished { return }
                    }
                }
            }
            return .deferred(reason: Self.describe(error))
        }
    }

    /// A deferred WAL scrub has not succeeded yet.
    public var walScrubPending: Bool { scrubRetry.withLock { $0.retrying } }

    private func truncate(waiting seconds: TimeInterval) async throws {
        let configured = Int32(busyTimeout * 1000)
        try await pool.writeWithoutTransaction { db in
            sqlite3_busy_timeout(db.sqliteConnection, Int32(seconds * 1000))
            defer { sqlite3_busy_timeout(db.sqliteConnection, configured) }
            try self.truncateAll(db)
        }
    }

    /// The files that make up this database (main, -wal, -shm), those that exist.
    public var files: [String] {
        ([path] + (keyStorePath.map { [$0] } ?? [])).flatMap { [$0, $0 + "-wal", $0 + "-shm"] }
            .filter { FileManager.default.fileExists(atPath: $0) }
    }

    static func describe(_ error: any Error) -> String {
        if let db = error as? DatabaseError { return db.message ?? "\(db.resultCode)" }
        return String(describing: error)
    }
}

/// Runs `PRAGMA wal_checkpoint(PASSIVE)` on a timer from a connection of its own. A passive checkpoint never
/// waits for, nor blocks, the writer, so checkpoints leave the commit path (and the stalls they caused there).
///
/// A passive pass alone never lets the WAL start over while commits keep coming: SQLite rewinds the WAL only
/// when a write transaction begins with every frame already copied, and the writer appends more while the pass
/// runs. Left at that, the writer's own autocheckpoint ended each cycle inside a commit, copying everything since
/// the last pass and syncing the main file: commits stalled every few seconds under load. So once
/// the WAL holds `cyclePages`, the pass is followed by a second one on the pool's writer connection, taken in
/// turn with the writes (no lock wait, no busy-handler sleep): it copies only what was committed during the
/// first, and the next transaction rewinds the WAL. It still syncs the main file, which holds the writes back
/// for that long: SQLite syncs the main file only when a pass copies the whole WAL, so that sync writes back every
/// page copied during the cycle. Writing them back after each first pass instead made the WAL's own syncs slower.
/// (The stall lengths measured: docs/design-notes.md.)
final class BackgroundCheckpointer: @unchecked Sendable {
    // @unchecked: the timer is set up in init and only cancelled after, both thread-safe in libdispatch.
    private let timer: any DispatchSourceTimer
    /// Below this, the WAL is left to the writer's autocheckpoint and to the close.
    static let minimumWALBytes = 1 << 20

    init(path: String, pool: DatabasePool, interval: TimeInterval, cyclePages: Int, synchronous: String) throws {
        var config = Configuration()
        config.label = "checkpointer"
        config.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = \(synchronous)") }
        let connection = try DatabaseQueue(path: path, configuration: config)
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "veil.checkpoint", qos: .utility))
        timer.schedule(deadline: .now() + interval, repeating: interval, leeway: .milliseconds(50))
        let wal = path + "-wal"
        timer.setEventHandler {
            // An idle database is left alone (a stat, not a transaction); a failure is harmless, since the
            // writer's autocheckpoint still bounds the WAL.
            var info = stat()
            guard stat(wal, &info) == 0, info.st_size >= Self.minimumWALBytes else { return }
            guard let pass = try? connection.writeWithoutTransaction({ db in try db.checkpoint(.passive) }),
                cyclePages > 0, pass.walFrameCount >= cyclePages
            else { return }
            _ = try? pool.writeWithoutTransaction { db in try db.checkpoint(.passive) }
        }
        timer.resume()
        self.timer = timer
    }

    deinit { timer.cancel() }
}

/// The SQLite backend's unit of work is GRDB's: a `Database` inside `read { }` or `write { }`, which implements the
/// repository protocols of the modules stored here (see the `…Tables.swift` files).
extension Store: TransactionRunner {
    public func read<T: Sendable>(_ body: @Sendable (Database) throws -> T) async throws -> T {
        try await pool.read(body)
    }

    public func write<T: Sendable>(_ body: @Sendable (Database) throws -> T) async throws -> T {
        try await pool.write(body)
    }

    public func readBlocking<T>(_ body: (Database) throws -> T) throws -> T {
        try pool.read(body)
    }

    public func writeBlocking<T>(_ body: (Database) throws -> T) throws -> T {
        try pool.write(body)
    }
}
