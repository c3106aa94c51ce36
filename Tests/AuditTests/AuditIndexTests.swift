import Foundation
import Storage
import SQLiteStorage
import Synchronization
import GRDB
import TestSupport
import Testing
import Vault
@testable import Audit

/// Issue #23: subject, actor and time queries answer from an index that trails the log; whatever its lag, a query
/// returns exactly what a scan of the whole log returns.
@Suite struct AuditIndexTests {
    final class Clock: Sendable {
        let ms = Mutex<Int64>(1_800_000_000_000)
        func now() -> Date { Date(timeIntervalSince1970: Double(ms.withLock { $0 }) / 1000) }
        func step(_ by: Int64) { ms.withLock { $0 += by } }
    }

    /// A log of `n` entries over 12 subjects and 5 actors, the clock moving (and once stepping back).
    func makeLog(_ n: Int) async throws -> String {
        let clock = Clock()
        let path = NSTemporaryDirectory() + "veil-audit-index-\(UUID().uuidString)/audit.sqlite"
        let log = try AuditLog(
            path: path, signer: SigningKeyPair.generate(), checkpointInterval: 1000, fullSync: false, now: clock.now, sync: { _ in 0 })
        var random = TestRandom()
        for i in 0..<n {
            clock.step(i == n / 2 ? -50_000 : Int64.random(in: 0...40, using: &random))
            try await log.append(
                AuditRecord(
                    actor: "actor-\(Int.random(in: 0..<5, using: &random))", role: "app", action: i % 3 == 0 ? "consent:read" : "events:write",
                    resource: "/v1/x", subjectToken: i % 7 == 0 ? nil : String(format: "%032x", Int.random(in: 0..<12, using: &random)),
                    outcome: i % 11 == 0 ? .denied : .allowed, requestID: "r\(i)"))
        }
        return path
    }

    @Test func indexedQueriesReturnExactlyWhatAScanReturnsAtAnyLag() async throws {
        let path = try await makeLog(9000)  // three time blocks, the clock stepping back in the second
        let reader = try AuditReader(path: path)
        let index = try AuditIndex(path: path + "-index", log: reader)
        let times = try reader.query(AuditQuery(limit: 1000)).map(\.at) + (try reader.query(AuditQuery(after: 8000, limit: 1000)).map(\.at))
        var random = TestRandom()
        var indexed = 0
        for lag in [9000, 5000, 4096, 1, 0] {
            // The watermark trails the log by `lag` entries; the rest is answered by scanning the tail.
            try index.reset()
            try index.catchUp(limit: 9000 - lag)
            #expect(try index.indexedThrough == Int64(9000 - lag))
            for trial in 0..<40 {
                var q = AuditQuery(limit: [1, 7, 100, 1000].randomElement(using: &random)!)
                switch trial % 4 {
                case 0: q.subjectToken = String(format: "%032x", Int.random(in: 0..<13, using: &random))
                case 1: q.actor = "actor-\(Int.random(in: 0..<6, using: &random))"
                case 2:
                    q.from = times.randomElement(using: &random)!
                    q.to = q.from! + Int64.random(in: 0...100_000, using: &random)
                default:
                    q.subjectToken = String(format: "%032x", Int.random(in: 0..<12, using: &random))
                    q.from = times.randomElement(using: &random)!
                }
                if trial % 5 == 0 { q.action = "consent:read" }
                if trial % 6 == 0 { q.outcome = .denied }
                q.after = Int64.random(in: 0...8000, using: &random)
                let expected = try reader.query(q)
                let answered = try index.query(q, catchUpLimit: 0)
                #expect(answered.map(\.sequence) == expected.map(\.sequence), "lag \(lag), trial \(trial)")
                indexed += expected.count
            }
        }
        #expect(indexed > 1000, "the queries matched entries (a test of empty answers would prove nothing)")
    }

    @Test func reindexRebuildsADeletedOrTamperedIndex() async throws {
        let path = try await makeLog(500)
        let reader = try AuditReader(path: path)
        let index = try AuditIndex(path: path + "-index", log: reader)
        let token = String(format: "%032x", 3)
        let expected = try reader.query(AuditQuery(subjectToken: token, limit: 1000))
        #expect(!expected.isEmpty)
        #expect(try index.query(AuditQuery(subjectToken: token, limit: 1000)) == expected)
        // Someone deletes index rows: the index no longer answers fully, and reindex restores it.
        try await index.index.pool.write { db in try db.execute(sql: "DELETE FROM by_subject") }
        #expect(try index.query(AuditQuery(subjectToken: token, limit: 1000)).count < expected.count)
        #expect(try index.reindex() == 500)
        #expect(try index.query(AuditQuery(subjectToken: token, limit: 1000)) == expected)
    }
}
