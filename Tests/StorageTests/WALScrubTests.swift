import Foundation
import GRDB
import SQLiteStorage
import Storage
import TestSupport
import Testing

@Suite struct WALScrubTests {
    static func contains(_ path: String, _ marker: Data) -> Bool {
        (FileManager.default.contents(atPath: path) ?? Data()).range(of: marker) != nil
    }

    static func fileSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? -1
    }

    @Test func aScrubKeptWaitingByAReaderIsRetriedUntilTheWALHoldsNoOldPage() async throws {
        let path = NSTemporaryDirectory() + "veil-scrub-\(UUID().uuidString)/db.sqlite"
        let store = try Store(path: path, migrations: [NotesTable()])
        let marker = Data("wrapped-key-of-a-shredded-subject".utf8)
        try await store.pool.write { db in
            try db.execute(sql: "INSERT INTO notes (id, token, body) VALUES ('k', 't', ?)", arguments: [marker])
        }
        #expect(await store.scrubWAL() == .done)

        let reader = HeldReader(store.pool, table: "notes")
        try await store.pool.write { db in try db.execute(sql: "DELETE FROM notes WHERE id = 'k'") }
        let scrub = await store.scrubWAL(wait: 0.2, retryInterval: 0.05)
        #expect(scrub == .deferred(reason: "database is locked"))
        #expect(store.walScrubPending)
        #expect(Self.contains(path + "-wal", marker) || Self.contains(path, marker), "the old page is still in the files while the reader is there")
        // Writers are not held back between tries.
        try await store.pool.write { db in
            try db.execute(sql: "INSERT INTO notes (id, token, body) VALUES ('other', 't', x'00')")
        }
        reader.end()

        for _ in 0..<4_800 where store.walScrubPending { try await Task.sleep(for: .milliseconds(25)) }  // up to 120 s on a starved run
        #expect(!store.walScrubPending)
        #expect(Self.fileSize(path + "-wal") == 0)
        #expect(!Self.contains(path + "-wal", marker))
        #expect(!Self.contains(path, marker), "secure_delete zeroed the row in the main file")
        #expect(try await store.pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM notes") } == 1)
    }
}
