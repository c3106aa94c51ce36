import Foundation
import GRDB
import Synchronization
import Vault

/// Envelope encryption per subject.
///
/// Each subject token has a random 32-byte data key, stored only wrapped by a master key version
/// (AD = `subject_keys|<token>`). A subject's rows are sealed with that data key, with associated data
/// binding table, row id and token, so a ciphertext copied to another row, table or subject fails to open.
/// Erasure deletes the wrapped key: every copy of the subject's rows, backups included, becomes noise.
public final class SubjectKeys: Sendable {
    /// The tables this type needs.
    public struct Migrations: MigrationSet {
        public init() {}
        public func register(in migrator: inout DatabaseMigrator) {
            migrator.registerMigration("storage.v1.subject_keys") { db in
                try db.execute(
                    sql: """
                        CREATE TABLE subject_keys (
                            token TEXT PRIMARY KEY NOT NULL,
                            key_version INTEGER NOT NULL,
                            generation INTEGER NOT NULL DEFAULT 1,
                            wrapped BLOB NOT NULL,
                            created_at INTEGER NOT NULL
                        ) WITHOUT ROWID;
                        CREATE INDEX subject_keys_version ON subject_keys(key_version);
                        CREATE TABLE shredded_subjects (
                            token TEXT PRIMARY KEY NOT NULL,
                            shredded_at INTEGER NOT NULL
                        ) WITHOUT ROWID;
                        """)
            }
            // The key store became a file of its own (attached as `keystore`): a backup of the data file must not carry
            // the keys that open it. `prepare` has copied the keys in a transaction of the key store alone; this drops
            // the data file's copy (secure_delete zeroes its pages) only once every key is in the key store.
            migrator.registerMigration(SubjectKeys.keyStoreMigration) { db in
                let missing =
                    try Int.fetchOne(
                        db,
                        sql: """
                            SELECT count(*) FROM main.subject_keys m WHERE NOT EXISTS (SELECT 1 FROM keystore.subject_keys k WHERE k.token = m.token)
                            """) ?? 0
                guard missing == 0 else {
                    throw StorageError(.migrationFailed, "\(missing) data keys are not in the key store yet; the data file keeps them until they are")
                }
                try db.execute(sql: "DROP TABLE main.subject_keys; DROP TABLE main.shredded_subjects")
            }
        }
    }

    /// The migration after which the data file holds no key.
    static let keyStoreMigration = "storage.v2.keystore_file"

    /// Creates the key store's tables and copies keys still in the data file (from before the key store had a file of
    /// its own), in a transaction that writes the key store alone. Idempotent: it runs at every open, before the
    /// migrations, so a crash at any point leaves either the old copy or both.
    public static func prepareKeyStore(in db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE IF NOT EXISTS keystore.subject_keys (
                    token TEXT PRIMARY KEY NOT NULL,
                    key_version INTEGER NOT NULL,
                    generation INTEGER NOT NULL DEFAULT 1,
                    wrapped BLOB NOT NULL,
                    created_at INTEGER NOT NULL
                ) WITHOUT ROWID;
                CREATE INDEX IF NOT EXISTS keystore.subject_keys_version ON subject_keys(key_version);
                CREATE TABLE IF NOT EXISTS keystore.shredded_subjects (
                    token TEXT PRIMARY KEY NOT NULL,
                    shredded_at INTEGER NOT NULL
                ) WITHOUT ROWID;
                """)
        let old = try String.fetchAll(
            db, sql: "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name IN ('subject_keys', 'shredded_subjects')")
        if old.contains("subject_keys") {
            try db.execute(
                sql: "INSERT OR IGNORE INTO keystore.subject_keys SELECT token, key_version, generation, wrapped, created_at FROM main.subject_keys")
        }
        if old.contains("shredded_subjects") {
            try db.execute(sql: "INSERT OR IGNORE INTO keystore.shredded_subjects SELECT token, shredded_at FROM main.shredded_subjects")
        }
    }

    private let ringBox: Mutex<KeyRing>
    private var ring: KeyRing { ringBox.withLock { $0 } }
    private let cache = Mutex<[String: SecretKey]>([:])
    private let cacheLimit: Int

    public init(ring: KeyRing, cacheLimit: Int = 10_000) {
        ringBox = Mutex(ring)
        self.cacheLimit = cacheLimit
    }

    /// Swaps in a reloaded key ring (after a rotation) while requests run: new data keys are wrapped under its
    /// current version from now on, and cached data keys are dropped so that reads unwrap through the new ring.
    public func replaceRing(_ newRing: KeyRing) {
        ringBox.withLock { $0 = newRing }
        clearCache()
    }

    /// The master version new data keys are wrapped under.
    public var currentVersion: UInt32 { ring.currentVersion }

    /// The generation recorded in row envelopes sealed with a subject data key.
    static let dataKeyGeneration: UInt32 = 1

    private static func wrapAD(_ token: String) -> [UInt8] { Array("subject_keys|\(token)".utf8) }

    static func rowAD(table: String, rowID: String, token: String) -> [UInt8] {
        // Length prefixes keep the encoding unambiguous whatever the parts contain.
        var ad = [UInt8]("veil.row.v1".utf8)
        for part in [table, rowID, token] { ad.appendLengthPrefixed(part) }
        return ad
    }

    /// The subject's data key, creating one when `create` is true and none exists.
    /// - Throws: ``StorageError/Code/shredded`` when the subject was erased and `create` is false.
    public func dataKey(for token: String, in db: Database, create: Bool) throws -> SecretKey? {
        if let key = cache.withLock({ $0[token] }) { return key }
        if let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT wrapped FROM keystore.subject_keys WHERE token = ?"), arguments: [token]) {
            let wrapped: Data = row["wrapped"]
            var raw: [UInt8]
            do {
                raw = try ring.open(Array(wrapped), associatedData: Self.wrapAD(token))
            } catch let error as VaultError {
                throw StorageError(.unreadable, "a subject data key cannot be unwrapped: \(error.message)")
            }
            defer { raw.wipe() }
            let key = try SecretKey(copying: raw, expectedCount: AEAD.keyLength)
            // Only a key read on the writer is remembered: a reader's snapshot may predate a shredding that has
            // already cleared the cache, and remembering its key would bring the shredded key back for later
            // writes (rows sealed under a key that is stored nowhere).
            if !db.configuration.readonly { remember(token, key) }
            return key
        }
        guard create else { return nil }
        let key = SecretKey(randomCount: AEAD.keyLength)
        let ring = self.ring
        let wrapped = key.withUnsafeBytes { ring.seal(Array($0), associatedData: Self.wrapAD(token)) }
        try db.execute(
            sql: "INSERT INTO keystore.subject_keys (token, key_version, wrapped, created_at) VALUES (?, ?, ?, ?)",
            arguments: [token, ring.currentVersion, Data(wrapped), Int64(Date().timeIntervalSince1970)])
        try db.cachedStatement(sql: "DELETE FROM keystore.shredded_subjects WHERE token = ?").execute(arguments: [token])
        remember(token, key)
        if db.isInsideTransaction {
            // The wrapped key is stored only if this transaction commits: on rollback, a remembered key would
            // seal later rows with a key no restart can find.
            db.afterNextTransaction(onCommit: { _ in }, onRollback: { _ in self.cache.withLock { _ = $0.removeValue(forKey: token) } })
        }
        return key
    }

    private func remember(_ token: String, _ key: SecretKey) {
        cache.withLock { cache in
            if cache.count >= cacheLimit { cache.removeAll(keepingCapacity: true) }
            cache[token] = key
        }
    }

    /// Seals `plaintext` for `token`'s row `rowID` of `table`, creating the subject's key if needed.
    public func seal(_ plaintext: [UInt8], token: String, table: String, rowID: String, in db: Database) throws -> Data {
        let key = try dataKey(for: token, in: db, create: true)!
        return Data(
            AEAD.seal(plaintext, key: key, version: Self.dataKeyGeneration, associatedData: Self.rowAD(table: table, rowID: rowID, token: token)))
    }

    /// Opens a value sealed by ``seal(_:token:table:rowID:in:)``.
    /// - Throws: ``StorageError`` `.shredded` when the subject's key is gone, `.unreadable` on any mismatch.
    public func open(_ sealed: Data, token: String, table: String, rowID: String, in db: Database) throws -> [UInt8] {
        guard let key = try dataKey(for: token, in: db, create: false) else {
            throw StorageError(.shredded, "the subject's data key does not exist (erased or never written)")
        }
        do {
            return try AEAD.open(Array(sealed), associatedData: Self.rowAD(table: table, rowID: rowID, token: token)) { version in
                guard version == Self.dataKeyGeneration else {
                    throw VaultError(.unknownKeyVersion, "unknown subject key generation \(version)")
                }
                return key
            }
        } catch let error as VaultError {
            throw StorageError(.unreadable, "a sealed row cannot be opened: \(error.message)")
        }
    }

    /// Crypto-shreds a subject: deletes its wrapped data key and records the erasure (by token).
    /// The caller deletes the subject's rows in the same transaction and checkpoints afterwards.
    /// - Returns: whether a key existed.
    @discardableResult
    public func shred(token: String, in db: Database) throws -> Bool {
        cache.withLock { _ = $0.removeValue(forKey: token) }
        try db.cachedStatement(sql: "DELETE FROM keystore.subject_keys WHERE token = ?").execute(arguments: [token])
        let existed = db.changesCount > 0
        try db.execute(
            sql: "INSERT OR REPLACE INTO keystore.shredded_subjects (token, shredded_at) VALUES (?, ?)",
            arguments: [token, Int64(Date().timeIntervalSince1970)])
        return existed
    }

    /// Creates the data keys of `owners` that do not exist yet, in a transaction of the key store alone, before the
    /// transaction that seals rows with them. SQLite commits the data file before an attached key store, and not
    /// atomically with it: a key created in the same transaction as its rows could be lost in a crash while the rows
    /// stay, sealed under a key stored nowhere.
    public func ensureKeys(_ owners: some Collection<String>, in pool: DatabasePool) async throws {
        // A key in the cache exists (shredding removes it from the cache first): no read needed for those.
        let owners = cache.withLock { known in owners.filter { known[$0] == nil } }
        guard !owners.isEmpty else { return }
        let missing = try await pool.read { db in
            try owners.filter { owner in
                try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM keystore.subject_keys WHERE token = ?"), arguments: [owner]) != true
            }
        }
        guard !missing.isEmpty else { return }
        try await pool.write { db in
            for owner in missing { _ = try self.dataKey(for: owner, in: db, create: true) }
        }
    }

    /// Shreds the data keys of `owners` in a transaction of the key store alone, committed before the caller deletes
    /// the rows: whatever a crash interrupts afterwards, the rows left behind can no longer be opened.
    public func shredKeys(_ owners: some Collection<String>, in pool: DatabasePool) async throws {
        guard !owners.isEmpty else { return }
        let owners = Array(owners)
        try await pool.write { db in
            for owner in owners { try self.shred(token: owner, in: db) }
        }
    }

    /// Drops every cached data key (after a key ring reload, say).
    public func clearCache() { cache.withLock { $0.removeAll() } }

    /// How many wrapped keys each master version protects.
    public static func versionCounts(in db: Database) throws -> [UInt32: Int] {
        var counts: [UInt32: Int] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT key_version, COUNT(*) AS n FROM keystore.subject_keys GROUP BY key_version") {
            counts[UInt32(row["key_version"] as Int64)] = row["n"]
        }
        return counts
    }

    /// How many wrapped keys each master version protects, read from `store`.
    public static func versionCounts(in store: Store) throws -> [UInt32: Int] {
        try store.pool.read { try versionCounts(in: $0) }
    }

    /// Re-wraps up to `batchSize` subject keys that are not yet under the current master version, in one
    /// transaction. Call until it returns 0; safe to interrupt and run again.
    /// - Returns: how many keys this batch re-wrapped.
    public func rewrapBatch(in pool: DatabasePool, batchSize: Int = 500) throws -> Int {
        let ring = self.ring
        return try pool.write { db in
            let rows = try Row.fetchAll(
                db, sql: "SELECT token, wrapped FROM keystore.subject_keys WHERE key_version <> ? LIMIT ?",
                arguments: [ring.currentVersion, batchSize])
            for row in rows {
                let token: String = row["token"]
                let wrapped: Data = row["wrapped"]
                var raw = try ring.open(Array(wrapped), associatedData: Self.wrapAD(token))
                let rewrapped = ring.seal(raw, associatedData: Self.wrapAD(token))
                raw.wipe()
                try db.execute(
                    sql: "UPDATE keystore.subject_keys SET wrapped = ?, key_version = ? WHERE token = ?",
                    arguments: [Data(rewrapped), ring.currentVersion, token])
            }
            return rows.count
        }
    }
}
