import Foundation
import GRDB
import SQLiteStorage
import TestSupport
import Testing
import Vault
@testable import Audit

struct AuditFixture {
    let path: String
    let signer = SigningKeyPair.generate()
    let log: AuditLog

    /// - Parameter sync: called in place of `fdatasync` on the WAL (see `AuditSyncOrderTests`).
    init(checkpointInterval: Int64 = 10, fullSync: Bool = true, sync: (@Sendable (Int32) -> Int32)? = nil) throws {
        path = NSTemporaryDirectory() + "veil-audit-\(UUID().uuidString)/audit.sqlite"
        if let sync {
            log = try AuditLog(path: path, signer: signer, checkpointInterval: checkpointInterval, fullSync: fullSync, now: Date.init, sync: sync)
        } else {
            // No heads by age: a starved run must not find a head the test did not ask for.
            log = try AuditLog(path: path, signer: signer, checkpointInterval: checkpointInterval, checkpointMaxAge: nil, fullSync: fullSync)
        }
    }

    func fill(_ n: Int) async throws {
        for i in 0..<n {
            try await log.append(
                AuditRecord(
                    actor: "app-\(i % 3)", role: "app", action: "events:write", resource: "/v1/events",
                    subjectToken: String(format: "%032x", i), outcome: i % 5 == 0 ? .denied : .allowed,
                    reason: "r\(i)", requestID: "req-\(i)"))
        }
    }

    func verify() throws -> AuditVerification {
        try AuditReader(path: path).verify(publicKey: signer.publicKey)
    }

    func execute(_ sql: String, _ arguments: StatementArguments = []) throws {
        try DatabaseQueue(path: path).write { try $0.execute(sql: sql, arguments: arguments) }
    }

    func string(_ sql: String, _ arguments: StatementArguments = []) throws -> String {
        try DatabaseQueue(path: path).read { try String.fetchOne($0, sql: sql, arguments: arguments)! }
    }

    /// Tampers as an attacker with write access to the file would: around the triggers.
    func tamper(_ sql: String, _ arguments: StatementArguments = []) throws {
        let queue = try DatabaseQueue(path: path)
        try queue.writeWithoutTransaction { db in
            try db.execute(
                sql:
                    "DROP TRIGGER IF EXISTS entries_no_update; DROP TRIGGER IF EXISTS entries_no_delete; DROP TRIGGER IF EXISTS checkpoints_no_delete"
            )
            try db.execute(sql: sql, arguments: arguments)
        }
    }
}

@Suite struct AuditLogTests {
    @Test func intactLogVerifiesAndCountsEntries() async throws {
        let f = try AuditFixture()
        try await f.fill(25)
        try await f.log.checkpoint()
        let result = try f.verify()
        #expect(result.intact)
        #expect(result.entries == 25)
        #expect(result.checkpoints == 3)
        #expect(result.signedThrough == 25)
    }

    /// The counts behind /metrics: concurrent appends share commits, commits share fsyncs, and the log sums how
    /// long each entry took to become durable.
    @Test(arguments: [true, false]) func statsCountEntriesCommitsAndFsyncs(fullSync: Bool) async throws {
        let f = try AuditFixture(checkpointInterval: 1000, fullSync: fullSync)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for t in 0..<8 {
                group.addTask {
                    for i in 0..<25 {
                        try await f.log.append(
                            AuditRecord(
                                actor: "a\(t)", role: "app", action: "events:write", resource: "/v1/events",
                                outcome: .allowed, requestID: "r\(t)-\(i)"))
                    }
                }
            }
            try await group.waitForAll()
        }
        let stats = f.log.stats
        #expect(stats.entries == 200)
        #expect(stats.batches >= 1 && stats.batches <= 200)
        #expect(fullSync ? stats.syncs >= 1 && stats.syncs <= stats.batches : stats.syncs == 0)
        #expect(stats.durableWaitNanos > 0)
        #expect(try f.verify().entries == 200)
    }

    /// Entries after the last signed head are unsigned: an attacker who cuts them off leaves a log that still
    /// verifies on its own, so the result says how far the signatures reach (and a trusted head closes the gap:
    /// TransparencyLogTests).
    @Test func verificationSaysHowFarTheSignaturesReach() async throws {
        let f = try AuditFixture()
        try await f.fill(25)
        let before = try f.verify()
        #expect(before.intact && before.entries == 25 && before.signedThrough == 20)
        try f.tamper("DELETE FROM entries WHERE seq > 20")
        let cut = try f.verify()
        #expect(cut.intact && cut.entries == 20 && cut.signedThrough == 20)
        try await f.log.checkpoint()
        #expect(try f.verify().signedThrough == 20)  // nothing new to sign
    }

    @Test func appendOnlyTriggersRefuseUpdatesAndDeletes() async throws {
        let f = try AuditFixture()
        try await f.fill(3)
        #expect(throws: DatabaseError.self) { try f.execute("UPDATE entries SET outcome = 'allowed'") }
        #expect(throws: DatabaseError.self) { try f.execute("DELETE FROM entries WHERE seq = 2") }
    }

    @Test(arguments: ["actor", "role", "action", "resource", "subject_token", "outcome", "reason", "request_id", "at", "hash", "prev_hash"])
    func aChangedFieldIsCaughtAtItsSequenceNumber(_ column: String) async throws {
        let f = try AuditFixture()
        try await f.fill(30)
        var random = TestRandom()
        let victim = Int64.random(in: 1...30, using: &random)
        if column == "at" {
            try f.tamper("UPDATE entries SET at = at + 1 WHERE seq = ?", [victim])
        } else {
            // Flip one character of the stored text.
            try f.tamper(
                "UPDATE entries SET \(column) = CASE WHEN substr(\(column), 1, 1) = 'x' THEN 'y' ELSE 'x' END || substr(\(column), 2) WHERE seq = ?",
                [victim])
        }
        let result = try f.verify()
        #expect(result.firstBadSequence == victim, "\(result.reason ?? "")")
    }

    @Test func randomSingleByteChangesAreAllDetected() async throws {
        let f = try AuditFixture()
        try await f.fill(40)
        let columns = ["actor", "action", "resource", "subject_token", "outcome", "reason", "request_id", "hash", "prev_hash"]
        try f.tamper("SELECT 1")
        var random = TestRandom()
        for trial in 0..<200 {
            let seq = Int64.random(in: 1...40, using: &random)
            let column = columns[trial % columns.count]
            let original = try f.string("SELECT \(column) FROM entries WHERE seq = ?", [seq])
            var bytes = Array(original.utf8)
            let position = Int.random(in: 0..<bytes.count, using: &random)
            bytes[position] = bytes[position] == UInt8(ascii: "z") ? UInt8(ascii: "y") : UInt8(ascii: "z")
            try f.execute("UPDATE entries SET \(column) = ? WHERE seq = ?", [String(decoding: bytes, as: UTF8.self), seq])
            #expect(try f.verify().firstBadSequence == seq)
            try f.execute("UPDATE entries SET \(column) = ? WHERE seq = ?", [original, seq])
        }
        #expect(try f.verify().intact)
    }

    @Test func removedEntryIsCaught() async throws {
        let f = try AuditFixture()
        try await f.fill(20)
        try f.tamper("DELETE FROM entries WHERE seq = 7")
        #expect(try f.verify().firstBadSequence == 7)
    }

    @Test func insertedEntryIsCaught() async throws {
        let f = try AuditFixture()
        try await f.fill(20)
        // Shift entries 12… up by one and insert a forged entry 12 with a self-consistent hash.
        try f.tamper("UPDATE entries SET seq = seq + 1000 WHERE seq >= 12")
        try f.tamper("UPDATE entries SET seq = seq - 999 WHERE seq >= 1000")
        let prev = try f.string("SELECT hash FROM entries WHERE seq = 11")
        let forged = AuditRecord(actor: "ghost", role: "admin", action: "subjects:export", resource: "/v1/subjects/x/export", outcome: .allowed)
        let hash = AuditEntry.computeHash(sequence: 12, at: 1, record: forged, previousHash: prev)
        try f.tamper(
            "INSERT INTO entries (seq, at, actor, role, action, resource, outcome, reason, request_id, prev_hash, hash) VALUES (12, 1, 'ghost', 'admin', 'subjects:export', '/v1/subjects/x/export', 'allowed', '', '', ?, ?)",
            [prev, hash])
        #expect(try f.verify().firstBadSequence == 13)
    }

    /// Privacy check 10, "duplicating any record": an entry copied as it is (its digest and link included) to the end
    /// of the log, or right after itself with the later entries moved up, is named where the copy stands.
    @Test(arguments: [false, true]) func aDuplicatedEntryIsCaughtWhereTheCopyStands(inPlace: Bool) async throws {
        let f = try AuditFixture(checkpointInterval: 100)
        try await f.fill(20)
        let columns = "at, actor, role, action, resource, subject_token, purpose, outcome, reason, request_id, prev_hash, hash"
        if inPlace {
            try f.tamper("UPDATE entries SET seq = seq + 1000 WHERE seq >= 8")
            try f.tamper("UPDATE entries SET seq = seq - 999 WHERE seq >= 1000")
            try f.tamper("INSERT INTO entries (seq, \(columns)) SELECT 8, \(columns) FROM entries WHERE seq = 7")
        } else {
            try f.tamper("INSERT INTO entries (seq, \(columns)) SELECT 21, \(columns) FROM entries WHERE seq = 7")
        }
        #expect(try f.string("SELECT COUNT(*) FROM entries") == "21")
        let result = try f.verify()
        #expect(result.firstBadSequence == (inPlace ? 8 : 21), "\(result.reason ?? "intact")")
    }

    @Test func reorderedEntriesAreCaught() async throws {
        let f = try AuditFixture()
        try await f.fill(20)
        try f.tamper("UPDATE entries SET seq = -1 WHERE seq = 5")
        try f.tamper("UPDATE entries SET seq = 5 WHERE seq = 6")
        try f.tamper("UPDATE entries SET seq = 6 WHERE seq = -1")
        #expect(try f.verify().firstBadSequence == 5)
    }

    @Test func logCutBeforeItsLastCheckpointIsCaught() async throws {
        let f = try AuditFixture(checkpointInterval: 10)
        try await f.fill(25)
        try f.tamper("DELETE FROM entries WHERE seq > 17")
        let result = try f.verify()
        #expect(result.firstBadSequence == 18)
        #expect(result.reason?.contains("cut") == true)
    }

    /// Privacy check 11, "changing the size, root or timestamp breaks verification": a head states in its signed note
    /// when it was signed, so the time stored beside it cannot be moved.
    @Test func aHeadsStoredTimeIsTheTimeItsNoteStates() async throws {
        let f = try AuditFixture(checkpointInterval: 10)
        try await f.fill(12)
        let at = try f.string("SELECT at FROM tree_heads WHERE size = 10")
        #expect(try f.string("SELECT note FROM tree_heads WHERE size = 10").contains("\n\(HeadSigner.timeLine)\(at)\n"))
        try f.tamper("DROP TRIGGER IF EXISTS tree_heads_no_update")
        try f.execute("UPDATE tree_heads SET at = at - 86400000 WHERE size = 10")
        let result = try f.verify()
        #expect(result.firstBadSequence == 10, "\(result.reason ?? "intact")")
        #expect(result.reason?.contains("time") == true)

        // A head signed before heads stated a time (no such line) still verifies; its stored time is not checked.
        let g = try AuditFixture(checkpointInterval: 1_000)
        try await g.fill(5)
        let root = try Data(base64Encoded: #require(try await g.log.checkpoint()).rootHash)!
        let old = try SignedNote.sign(
            text: Checkpoint(origin: HeadSigner.defaultOrigin(for: g.signer.publicKey), size: 5, rootHash: [UInt8](root)).text,
            name: HeadSigner.defaultOrigin(for: g.signer.publicKey), with: g.signer)
        try g.tamper("DROP TRIGGER IF EXISTS tree_heads_no_update")
        try g.execute("UPDATE tree_heads SET note = ?, at = 1 WHERE size = 5", [old])
        let legacy = try g.verify()
        #expect(legacy.intact && legacy.signedThrough == 5, "\(legacy.reason ?? "")")
    }

    @Test func forgedHeadIsCaught() async throws {
        let f = try AuditFixture(checkpointInterval: 10)
        try await f.fill(12)
        try f.tamper("DROP TRIGGER IF EXISTS tree_heads_no_update")
        let note = try f.string("SELECT note FROM tree_heads WHERE size = 10")
        // One character of the signature line changed: the note no longer verifies.
        var bytes = Array(note.utf8)
        bytes[bytes.count - 5] = bytes[bytes.count - 5] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        try f.tamper("UPDATE tree_heads SET note = ? WHERE size = 10", [String(decoding: bytes, as: UTF8.self)])
        #expect(try f.verify().firstBadSequence == 10)
        // The stored root column disagreeing with the signed note is caught too.
        try f.tamper("UPDATE tree_heads SET note = ?, root = zeroblob(32) WHERE size = 10", [note])
        let result = try f.verify()
        #expect(result.firstBadSequence == 10 && result.reason?.contains("does not say what its signed note says") == true, "\(result.reason ?? "")")
        // And a different key does not verify an untouched log.
        let g = try AuditFixture(checkpointInterval: 5)
        try await g.fill(6)
        #expect(try AuditReader(path: g.path).verify(publicKey: SigningKeyPair.generate().publicKey).firstBadSequence == 5)
    }

    /// Both durability levels: returning on commit, and after the syncer's fdatasync that follows the commit.
    @Test(arguments: [true, false])
    func concurrentAppendsAreGroupCommittedIntoOneContiguousChain(fullSync: Bool) async throws {
        let f = try AuditFixture(checkpointInterval: 100, fullSync: fullSync)
        let sequences = try await withThrowingTaskGroup(of: Int64.self) { group in
            for i in 0..<500 {
                group.addTask {
                    try await f.log.append(
                        AuditRecord(actor: "c\(i)", role: "app", action: "events:write", resource: "/v1/events", outcome: .allowed)
                    ).sequence
                }
            }
            return try await group.reduce(into: [Int64]()) { $0.append($1) }
        }
        #expect(Set(sequences) == Set(1...500))
        let result = try f.verify()
        #expect(result.intact)
        #expect(result.entries == 500)
        // Fewer transactions than entries: the checkpoint count is bounded by the batches, not the entries.
        #expect(try AuditReader(path: f.path).checkpoints().count <= 5)
    }

    @Test func aFailedBatchFailsItsCallersAndLeavesTheLogWritable() async throws {
        let f = try AuditFixture()
        try await f.fill(3)
        // Another connection makes SQLite refuse one kind of row, as a full disk or a broken file would refuse them all.
        try f.execute("CREATE TRIGGER refuse_poison BEFORE INSERT ON entries WHEN NEW.actor = 'poison' BEGIN SELECT RAISE(ABORT, 'refused'); END")
        await #expect(throws: AuditError.self) {
            try await f.log.append(AuditRecord(actor: "poison", role: "app", action: "x", resource: "r", outcome: .allowed))
        }
        // The failed batch was rolled back: the next batch starts its own transaction and extends the same chain.
        let next = try await f.log.append(AuditRecord(actor: "after", role: "app", action: "x", resource: "r", outcome: .allowed))
        #expect(next.sequence == 4)
        try await f.log.checkpoint()
        let result = try f.verify()
        #expect(result.intact, "\(result.reason ?? "")")
        #expect(result.entries == 4)
        #expect(try f.string("SELECT COUNT(*) FROM entries WHERE actor = 'poison'") == "0")
    }

    @Test func twoWritersOnOneFileKeepOneChain() async throws {
        // The server and a command line process append to the same log.
        let f = try AuditFixture()
        let other = try AuditLog(path: f.path, signer: f.signer, checkpointInterval: 10)
        for i in 0..<30 {
            let log = i % 3 == 0 ? other : f.log
            try await log.append(AuditRecord(actor: "w\(i % 3)", role: "admin", action: "x", resource: "r", outcome: .allowed))
        }
        try await other.checkpoint()
        let result = try f.verify()
        #expect(result.intact, "\(result.reason ?? "")")
        #expect(result.entries == 30)
    }

    @Test func queryFiltersAndPaginates() async throws {
        let f = try AuditFixture()
        try await f.fill(30)
        let reader = try AuditReader(path: f.path)
        let denied = try reader.query(AuditQuery(outcome: .denied))
        #expect(denied.map(\.sequence) == [1, 6, 11, 16, 21, 26])
        let page1 = try reader.query(AuditQuery(actor: "app-1", limit: 4))
        #expect(page1.count == 4)
        let page2 = try reader.query(AuditQuery(actor: "app-1", after: page1.last!.sequence, limit: 100))
        #expect(page2.count == 6)
        #expect(Set(page1.map(\.sequence)).isDisjoint(with: page2.map(\.sequence)))
        let export = String(decoding: try reader.exportJSONLines(), as: UTF8.self)
        #expect(export.split(separator: "\n").count == 30 + 3)
    }
}
