import Foundation
import GRDB
import Storage

/// The key store's tables (`subject_keys`, `shredded_subjects`), in the file attached as ``Store/keyStoreSchema``.
public struct SubjectKeyTables: MigrationSet {
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
        migrator.registerMigration(SubjectKeyTables.keyStoreMigration) { db in
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

    /// The migration after which the data file holds no key.
    public static let keyStoreMigration = "storage.v2.keystore_file"

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
}

/// GRDB's transaction is the SQLite backend's unit of work: it implements the key store's repository.
extension Database: SubjectKeyRepository {
    public var isReadOnlyTransaction: Bool { configuration.readonly }

    public func onRollback(_ body: @escaping @Sendable () -> Void) {
        guard isInsideTransaction else { return }
        afterNextTransaction(onCommit: { _ in }, onRollback: { _ in body() })
    }

    public func wrappedSubjectKey(owner: String) throws -> [UInt8]? {
        try Data.fetchOne(cachedStatement(sql: "SELECT wrapped FROM keystore.subject_keys WHERE token = ?"), arguments: [owner]).map { Array($0) }
    }

    public func insertSubjectKey(owner: String, version: UInt32, wrapped: [UInt8], createdAt: Int64) throws {
        try execute(
            sql: "INSERT INTO keystore.subject_keys (token, key_version, wrapped, created_at) VALUES (?, ?, ?, ?)",
            arguments: [owner, version, Data(wrapped), createdAt])
        try cachedStatement(sql: "DELETE FROM keystore.shredded_subjects WHERE token = ?").execute(arguments: [owner])
    }

    public func deleteSubjectKey(owner: String, shreddedAt: Int64) throws -> Bool {
        try cachedStatement(sql: "DELETE FROM keystore.subject_keys WHERE token = ?").execute(arguments: [owner])
        let existed = changesCount > 0
        try execute(
            sql: "INSERT OR REPLACE INTO keystore.shredded_subjects (token, shredded_at) VALUES (?, ?)", arguments: [owner, shreddedAt])
        return existed
    }

    public func subjectKeys(notUnder version: UInt32, limit: Int) throws -> [(owner: String, wrapped: [UInt8])] {
        try Row.fetchAll(
            self, sql: "SELECT token, wrapped FROM keystore.subject_keys WHERE key_version <> ? LIMIT ?", arguments: [version, limit]
        ).map { ($0["token"], Array($0["wrapped"] as Data)) }
    }

    public func replaceSubjectKey(owner: String, version: UInt32, wrapped: [UInt8]) throws {
        try execute(
            sql: "UPDATE keystore.subject_keys SET wrapped = ?, key_version = ? WHERE token = ?", arguments: [Data(wrapped), version, owner])
    }

    public func subjectKeyVersionCounts() throws -> [UInt32: Int] {
        var counts: [UInt32: Int] = [:]
        for row in try Row.fetchAll(self, sql: "SELECT key_version, COUNT(*) AS n FROM keystore.subject_keys GROUP BY key_version") {
            counts[UInt32(row["key_version"] as Int64)] = row["n"]
        }
        return counts
    }
}
