import Foundation
import GRDB
@testable import SQLiteStorage
import Storage
import Testing

@Suite struct BackgroundCheckpointTests {
    static func mainFileBytes(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
    }

    /// Writes 6,000 rows (a WAL over the checkpointer's 1 MiB threshold) with the writer's autocheckpoint off; returns the store and the main file's size after.
    static func fill(backgroundInterval: TimeInterval) throws -> (Store, Int) {
        let path = NSTemporaryDirectory() + "veil-ckpt-\(UUID().uuidString)/db.sqlite"
        let store = try Store(
            path: path, migrations: [NotesTable()],
            configuration: .init(fullSync: false, walAutocheckpointPages: 0, backgroundCheckpointInterval: backgroundInterval))
        for batch in 0..<60 {
            try store.pool.write { db in
                for n in 0..<100 {
                    try db.execute(
                        sql: "INSERT INTO notes (id, token, body) VALUES (?, ?, ?)",
                        arguments: ["\(batch)-\(n)", "t", Data(repeating: UInt8(n), count: 200)])
                }
            }
        }
        return (store, mainFileBytes(path))
    }

    static func rowCount(_ store: Store) throws -> Int? {
        try store.pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM notes") }
    }

    @Test func theWALIsCopiedIntoTheMainFileWithoutTheWriter() async throws {
        // Control: with neither autocheckpoint nor background checkpoints, the rows stay in the WAL.
        let (idle, _) = try Self.fill(backgroundInterval: 0)
        try await Task.sleep(for: .milliseconds(300))
        #expect(Self.mainFileBytes(idle.path) < 100_000)
        #expect(Self.mainFileBytes(idle.path + "-wal") > BackgroundCheckpointer.minimumWALBytes)

        let (store, _) = try Self.fill(backgroundInterval: 0.05)
        var copied = false
        for _ in 0..<60 where !copied {
            try await Task.sleep(for: .milliseconds(50))
            copied = Self.mainFileBytes(store.path) > 1_200_000
        }
        #expect(copied, "the main file is still \(Self.mainFileBytes(store.path)) bytes")
        #expect(try Self.rowCount(store) == 6000)
    }
}

@Suite struct StoreDurabilityTests {
    static func open(fullSync: Bool, autocheckpoint: Int = 1000, background: TimeInterval = 0, cyclePages: Int = 0) throws -> Store {
        try Store(
            path: NSTemporaryDirectory() + "veil-sync-\(UUID().uuidString)/db.sqlite", migrations: [NotesTable()],
            configuration: .init(
                fullSync: fullSync, walAutocheckpointPages: autocheckpoint,
                backgroundCheckpointInterval: background, walCyclePages: cyclePages))
    }

    /// The connection that commits is the one whose setting decides durability; GRDB's WAL setup once reset it.
    @Test func theWriterCommitsWithTheAskedSynchronousLevel() throws {
        for (fullSync, level) in [(true, 2), (false, 1)] {
            let store = try Self.open(fullSync: fullSync)
            let writer = try store.pool.writeWithoutTransaction { try Int.fetchOne($0, sql: "PRAGMA synchronous") }
            #expect(writer == level, "fullSync \(fullSync): the writer runs synchronous = \(writer ?? -1)")
        }
    }

    /// Under an unbroken stream of commits, with the writer's own autocheckpoint off, the WAL starts over once it
    /// holds the cycle's pages instead of growing with every commit.
    @Test func theBackgroundCheckpointerEndsWALCyclesUnderContinuousWrites() throws {
        let store = try Self.open(fullSync: false, autocheckpoint: 0, background: 0.02, cyclePages: 400)
        let body = Data(repeating: 7, count: 300)
        let deadline = Date().addingTimeInterval(1.5)
        var commits = 0
        while Date() < deadline || commits < 5_000 {
            try store.pool.write { db in
                try db.execute(sql: "INSERT INTO notes (id, token, body) VALUES (?, 't', ?)", arguments: ["n\(commits)", body])
            }
            commits += 1
        }
        // Every commit appends at least one 4 KiB frame: without restarts the WAL would hold them all.
        let walBytes = BackgroundCheckpointTests.mainFileBytes(store.path + "-wal")
        #expect(walBytes < commits * 4096 / 4, "\(commits) commits left a WAL of \(walBytes) bytes")
        #expect(try BackgroundCheckpointTests.rowCount(store) == commits)
    }
}
