import Foundation
import GRDB
import SQLiteStorage
import TestSupport
import Testing
@testable import Storage
@testable import Vault

/// A table of sealed per-subject records, as a feature module would define one.
struct NotesTable: MigrationSet {
    func register(in migrator: inout DatabaseMigrator) {
        migrator.registerMigration("test.v1.notes") { db in
            try db.execute(sql: "CREATE TABLE notes (id TEXT PRIMARY KEY, token TEXT NOT NULL, body BLOB NOT NULL)")
        }
    }
}

struct Fixture {
    let dir: String
    let ring: KeyRing
    let store: Store
    let keys: SubjectKeys

    init() throws {
        dir = NSTemporaryDirectory() + "veil-storage-\(UUID().uuidString)"
        ring = try KeyRing.initialize(directory: dir + "/keys")
        store = try Store(
            path: dir + "/data/veil.sqlite", migrations: [SubjectKeyTables(), NotesTable()],
            configuration: .init(keyStorePath: dir + "/keys/subject-keys.sqlite"))
        keys = SubjectKeys(ring: ring)
    }

    func token(_ subject: String) -> String { Hash.keyed(Array(subject.utf8), key: ring.pseudonymKey).hexString }
    func owner(_ subject: String) -> DataKeyOwner { DataKeyOwner(token: token(subject), use: .personalization) }
    func address(_ id: String, _ token: String) -> RowAddress {
        RowAddress(table: .interactions, row: id, owner: DataKeyOwner(token: token, use: .personalization))
    }

    func write(subject: String, id: String, body: String, keys: SubjectKeys? = nil) throws {
        let keys = keys ?? self.keys
        let token = token(subject)
        try store.pool.write { db in
            let sealed = try keys.seal(Array(body.utf8), at: self.address(id, token), in: db)
            try db.execute(sql: "INSERT INTO notes (id, token, body) VALUES (?, ?, ?)", arguments: [id, token, Data(sealed)])
        }
    }

    func read(id: String, keys: SubjectKeys? = nil, store: Store? = nil) throws -> String {
        let keys = keys ?? self.keys
        return try (store ?? self.store).pool.read { db in
            let row = try Row.fetchOne(db, sql: "SELECT token, body FROM notes WHERE id = ?", arguments: [id])!
            return String(decoding: try keys.open(Array(row["body"] as Data), at: self.address(id, row["token"]), in: db), as: UTF8.self)
        }
    }
}

@Suite struct SubjectKeysTests {
    @Test func sealedRowsReadBack() throws {
        let f = try Fixture()
        try f.write(subject: "u-1", id: "n1", body: "viewed sku-1")
        #expect(try f.read(id: "n1") == "viewed sku-1")
        // A fresh cache must unwrap the key from the database.
        #expect(try f.read(id: "n1", keys: SubjectKeys(ring: f.ring)) == "viewed sku-1")
    }

    /// A key created in a transaction that rolls back was never stored: a later write must not seal with it
    /// (from memory), or that row could never be opened again once the process restarts.
    @Test func aKeyFromARolledBackTransactionIsNotUsedLater() throws {
        let f = try Fixture()
        struct Abort: Error {}
        #expect(throws: Abort.self) {
            try f.store.pool.write { db in
                _ = try f.keys.seal(Array("lost".utf8), at: f.address("n0", f.token("u-9")), in: db)
                throw Abort()
            }
        }
        try f.write(subject: "u-9", id: "n1", body: "kept")
        #expect(try f.read(id: "n1") == "kept")
        // A restarted process (a fresh cache) must read it too.
        #expect(try f.read(id: "n1", keys: SubjectKeys(ring: f.ring)) == "kept")
    }

    @Test func ciphertextMovedToAnotherRowFailsToOpen() throws {
        let f = try Fixture()
        try f.write(subject: "u-1", id: "n1", body: "first")
        try f.write(subject: "u-1", id: "n2", body: "second")
        try f.write(subject: "u-2", id: "n3", body: "third")
        try f.store.pool.write { db in
            // Swap the two ciphertexts of the same subject, then move u-2's ciphertext under u-1.
            let b2: Data = try Data.fetchOne(db, sql: "SELECT body FROM notes WHERE id = 'n2'")!
            let b3: Data = try Data.fetchOne(db, sql: "SELECT body FROM notes WHERE id = 'n3'")!
            try db.execute(sql: "UPDATE notes SET body = ? WHERE id = 'n1'", arguments: [b2])
            try db.execute(sql: "UPDATE notes SET body = ? WHERE id = 'n2'", arguments: [b3])
        }
        #expect(throws: StorageError(.unreadable, "")) { try f.read(id: "n1") }
        #expect(throws: StorageError(.unreadable, "")) { try f.read(id: "n2") }
        #expect(try f.read(id: "n3") == "third")
    }

    @Test func bindingHoldsAcrossRandomisedTrials() throws {
        let f = try Fixture()
        let owner = f.owner("u-1")
        let key = try f.store.pool.write { try f.keys.dataKey(for: owner, in: $0, create: true)! }
        var rng = TestRandom()
        for trial in 0..<1000 {
            let rowID = "r\(trial)"
            let sealed = key.seal([UInt8](repeating: 1, count: 20), at: RowAddress(table: .interactions, row: rowID, owner: owner))
            #expect(try key.open(sealed, at: RowAddress(table: .interactions, row: rowID, owner: owner)) == [UInt8](repeating: 1, count: 20))
            // Change exactly one of: table, row id, owner (token, then use), key version, or one ciphertext byte.
            var envelope = sealed
            var address = RowAddress(table: .interactions, row: rowID, owner: owner)
            switch trial % 6 {
            case 0: address = RowAddress(table: .profiles, row: rowID, owner: owner)
            case 1: address = RowAddress(table: .interactions, row: "r\(trial + 1)", owner: owner)
            case 2: address = RowAddress(table: .interactions, row: rowID, owner: f.owner("u-2"))
            case 3: address = RowAddress(table: .interactions, row: rowID, owner: DataKeyOwner(token: owner.token, use: .identity))
            case 4: envelope[4] ^= 0x02
            default: envelope[Int.random(in: 5..<envelope.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
            }
            #expect(throws: VaultError.self, "trial \(trial), seed \(rng.seed)") { try key.open(envelope, at: address) }
        }
    }

    /// Issue #21, item 7: a reader whose snapshot predates a shredding reads the old key after the shredding cleared
    /// the cache. It must not put that key back: a later write (after a new consent) would seal rows with a key that
    /// is stored nowhere, and no restart could open them. The interleaving is forced with semaphores.
    @Test func aReaderOnAnOldSnapshotDoesNotBringAShreddedKeyBack() throws {
        let f = try Fixture()
        let keys = SubjectKeys(ring: f.ring)
        let token = f.token("u-1"), owner = f.owner("u-1")
        try f.write(subject: "u-1", id: "n1", body: "before", keys: keys)
        let snapshotTaken = DispatchSemaphore(value: 0), shredded = DispatchSemaphore(value: 0)
        let reader = Thread {
            try? f.store.pool.read { db in
                _ = try Int.fetchOne(db, sql: "SELECT count(*) FROM notes")  // the snapshots start here: data file
                _ = try Int.fetchOne(db, sql: "SELECT count(*) FROM keystore.subject_keys")  // and key store
                snapshotTaken.signal()
                _ = shredded.wait(timeout: .now() + 10)
                #expect(try keys.dataKey(for: owner, in: db, create: false) != nil, "the old snapshot still holds the key")
            }
            snapshotTaken.signal()
        }
        keys.clearCache()
        reader.start()
        #expect(snapshotTaken.wait(timeout: .now() + 10) == .success)
        try f.store.pool.write { db in
            try keys.shred(owner, in: db)
            try db.execute(sql: "DELETE FROM notes WHERE token = ?", arguments: [token])
        }
        shredded.signal()
        #expect(snapshotTaken.wait(timeout: .now() + 10) == .success)
        // The subject consents again and writes: the row must open after a restart (a fresh key cache).
        try f.write(subject: "u-1", id: "n2", body: "after", keys: keys)
        #expect(try f.read(id: "n2", keys: SubjectKeys(ring: f.ring)) == "after")
    }

    /// An operator backs up the data file (`VACUUM INTO`, as a live backup is taken), a subject is erased, and the
    /// backup is restored and opened with the key store as it now is (a server started on the copy with the same
    /// `Keys/`). Nothing of the erased subject opens; the others' rows do. The backup itself holds no key.
    @Test func aDataBackupTakenBeforeAnErasureOpensNothingOfTheSubject() throws {
        let f = try Fixture()
        try f.write(subject: "alice@example.com", id: "a1", body: "alice's row")
        try f.write(subject: "bob@example.com", id: "b1", body: "bob's row")
        let backup = f.dir + "/backup/veil.sqlite"
        try FileManager.default.createDirectory(atPath: f.dir + "/backup", withIntermediateDirectories: true)
        try f.store.pool.writeWithoutTransaction { db in try db.execute(sql: "VACUUM INTO ?", arguments: [backup]) }

        try f.store.pool.write { db in
            try f.keys.shred(f.owner("alice@example.com"), in: db)
            try db.execute(sql: "DELETE FROM notes WHERE token = ?", arguments: [f.token("alice@example.com")])
        }
        try f.store.checkpointAndTruncate()

        // The backup of the data holds ciphertext only: no table of keys, and no key's bytes.
        let plain = try Store(path: backup, migrations: [])
        let tables = try plain.pool.read { try String.fetchAll($0, sql: "SELECT name FROM sqlite_master WHERE type = 'table'") }
        #expect(tables.contains("notes"))
        #expect(!tables.contains { $0.contains("key") || $0.contains("shredded") }, "the data backup has tables \(tables)")

        // Restored with the live key store attached: alice's row is in the file, and nothing opens it.
        let restored = try Store(
            path: backup, migrations: [SubjectKeyTables(), NotesTable()],
            configuration: .init(keyStorePath: f.dir + "/keys/subject-keys.sqlite"))
        let keys = SubjectKeys(ring: f.ring)
        #expect(try restored.pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM notes WHERE id = 'a1'") } == 1)
        #expect(throws: StorageError(.shredded, "")) { try f.read(id: "a1", keys: keys, store: restored) }
        #expect(try f.read(id: "b1", keys: keys, store: restored) == "bob's row")
    }

    /// A data file from before the key store had a file of its own (keys in `main.subject_keys`) is upgraded: its
    /// keys move to the key store, the data file keeps none, rows still open, and opening again changes nothing.
    @Test func anOldDataFileWithItsKeysInsideIsUpgradedAndKeepsNone() throws {
        let f = try Fixture()
        try f.write(subject: "u-1", id: "n1", body: "old row")
        let (token, wrapped, version) = try f.store.pool.read { db -> (String, Data, Int64) in
            let row = try Row.fetchOne(db, sql: "SELECT token, wrapped, key_version FROM keystore.subject_keys")!
            return (row["token"], row["wrapped"], row["key_version"])
        }
        let (noteToken, sealed) = try f.store.pool.read { db -> (String, Data) in
            let row = try Row.fetchOne(db, sql: "SELECT token, body FROM notes WHERE id = 'n1'")!
            return (row["token"], row["body"])
        }
        // The old layout: the v1 tables in the data file, holding the key, and v1 alone recorded as applied.
        let old = f.dir + "/old/veil.sqlite"
        try FileManager.default.createDirectory(atPath: f.dir + "/old", withIntermediateDirectories: true)
        let queue = try DatabaseQueue(path: old)
        try queue.write { db in
            try db.execute(
                sql: """
                    CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
                    INSERT INTO grdb_migrations VALUES ('storage.v1.subject_keys'), ('test.v1.notes');
                    CREATE TABLE subject_keys (token TEXT PRIMARY KEY NOT NULL, key_version INTEGER NOT NULL, generation INTEGER NOT NULL DEFAULT 1,
                                               wrapped BLOB NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID;
                    CREATE INDEX subject_keys_version ON subject_keys(key_version);
                    CREATE TABLE shredded_subjects (token TEXT PRIMARY KEY NOT NULL, shredded_at INTEGER NOT NULL) WITHOUT ROWID;
                    CREATE TABLE notes (id TEXT PRIMARY KEY, token TEXT NOT NULL, body BLOB NOT NULL);
                    """)
            try db.execute(
                sql: "INSERT INTO subject_keys (token, key_version, wrapped, created_at) VALUES (?, ?, ?, 0)", arguments: [token, version, wrapped])
            try db.execute(sql: "INSERT INTO notes (id, token, body) VALUES ('n1', ?, ?)", arguments: [noteToken, sealed])
        }
        try queue.close()
        let keyStore = f.dir + "/old-keys/subject-keys.sqlite"
        for _ in 0..<2 {
            let upgraded = try Store(path: old, migrations: [SubjectKeyTables(), NotesTable()], configuration: .init(keyStorePath: keyStore))
            #expect(try f.read(id: "n1", keys: SubjectKeys(ring: f.ring), store: upgraded) == "old row")
            let tables = try upgraded.pool.read { try String.fetchAll($0, sql: "SELECT name FROM main.sqlite_master WHERE type = 'table'") }
            #expect(!tables.contains("subject_keys") && !tables.contains("shredded_subjects"), "\(tables)")
        }
        // No byte of the wrapped key is left in the data file or its WAL.
        for suffix in ["", "-wal"] {
            let bytes = (try? Data(contentsOf: URL(fileURLWithPath: old + suffix))) ?? Data()
            #expect(bytes.range(of: wrapped) == nil, "the wrapped key is still in veil.sqlite\(suffix)")
        }
    }

    /// A data file whose key store was deleted (or swapped for an empty one) must not start as if every subject
    /// had been erased: the store refuses with the fix.
    @Test func aMissingKeyStoreIsRefusedNotRecreated() throws {
        let f = try Fixture()
        try f.write(subject: "u-1", id: "n1", body: "x")
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: f.dir + "/keys/subject-keys.sqlite" + suffix) }
        #expect {
            _ = try Store(
                path: f.store.path, migrations: [SubjectKeyTables(), NotesTable()],
                configuration: .init(keyStorePath: f.dir + "/keys/subject-keys.sqlite"))
        } throws: { error in
            (error as? StorageError)?.message.contains("restore the key store") == true
        }
    }

    @Test func noPlaintextIdentifierInAnyDatabaseFile() throws {
        let f = try Fixture()
        let email = "carol.canary@example.org"
        let ip = "203.0.113.77"
        try f.write(subject: email, id: "c1", body: "{\"ip\":\"\(ip)\",\"note\":\"from \(email)\"}")
        #expect(try f.read(id: "c1").contains(ip))
        let files = f.store.files
        #expect(files.contains { $0.hasSuffix("-wal") })
        // Scan before closing (live WAL) and after a checkpoint.
        for phase in 0..<2 {
            if phase == 1 { try f.store.checkpointAndTruncate() }
            for file in f.store.files {
                let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
                for needle in [email, ip, "carol.canary"] {
                    #expect(bytes.range(of: Data(needle.utf8)) == nil, "\(needle) found in \(file)")
                    #expect(bytes.range(of: Data(needle.utf8).base64EncodedData()) == nil)
                    #expect(bytes.range(of: Data(Array(needle.utf8).hexString.utf8)) == nil)
                }
            }
        }
    }

    @Test func rewrapMovesEveryKeyToTheNewVersionInBatchesAndDataStillReads() throws {
        let f = try Fixture()
        for i in 0..<25 { try f.write(subject: "u-\(i)", id: "n\(i)", body: "row \(i)") }
        try KeyRing.rotate(directory: f.ring.directory)
        let rotated = try KeyRing.load(directory: f.ring.directory)
        let keys = SubjectKeys(ring: rotated)
        #expect(try SubjectKeys.versionCounts(in: f.store) == [1: 25])
        // New subjects are wrapped under v2 right away.
        try f.write(subject: "u-new", id: "new", body: "after rotation", keys: keys)
        #expect(try keys.rewrapBatch(in: f.store, batchSize: 10) == 10)
        // An interrupted run leaves a mix that still reads.
        #expect(try f.read(id: "n3", keys: SubjectKeys(ring: rotated)) == "row 3")
        while try keys.rewrapBatch(in: f.store, batchSize: 10) > 0 {}
        #expect(try SubjectKeys.versionCounts(in: f.store) == [2: 26])
        _ = try KeyRing.retire(directory: f.ring.directory, below: 2)
        let onlyV2 = SubjectKeys(ring: try KeyRing.load(directory: f.ring.directory))
        for i in 0..<25 { #expect(try f.read(id: "n\(i)", keys: onlyV2) == "row \(i)") }
        #expect(try f.read(id: "new", keys: onlyV2) == "after rotation")
    }

    @Test func storeRunsInWALWithSecureDeleteAndForeignKeys() throws {
        let f = try Fixture()
        let (mode, secure, fk) = try f.store.pool.read { db in
            (
                try String.fetchOne(db, sql: "PRAGMA journal_mode"), try Int.fetchOne(db, sql: "PRAGMA secure_delete"),
                try Int.fetchOne(db, sql: "PRAGMA foreign_keys")
            )
        }
        #expect(mode == "wal")
        #expect(secure == 1)
        #expect(fk == 1)
    }

    @Test func unwritableDataDirectoryGivesAClearError() throws {
        do {
            _ = try Store(path: "/proc/veil-cannot-exist/veil.sqlite", migrations: [])
            Issue.record("opening under /proc succeeded")
        } catch let error as StorageError {
            #expect(error.code == .cannotOpen)
            #expect(error.message.contains("/proc/veil-cannot-exist"))
        }
    }
}
