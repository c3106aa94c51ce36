import Foundation
import GRDB
import SQLiteStorage
import TestSupport
import Testing
import Vault
@testable import Audit

/// Issue #23: the log as a transparency log. Its tree must be RFC 6962's over the entries' digests, its heads C2SP
/// checkpoints that open with the audit key, its proofs must verify with the RFC's verifier, and every attack on the
/// real file (cut, rewrite and re-sign, fork) must fail against a head held from before.
@Suite struct TransparencyLogTests {
    /// Leaf hashes as an independent reader computes them: SHA-256(0x00 || the 32 bytes of each entry's `hash`).
    func leafHashes(_ f: AuditFixture) throws -> [[UInt8]] {
        try DatabaseQueue(path: f.path).read { db in
            try String.fetchAll(db, sql: "SELECT hash FROM entries ORDER BY seq").map { Merkle.leafHash([UInt8](hexString: $0)!) }
        }
    }

    func opened(_ cp: AuditCheckpoint, _ f: AuditFixture) throws -> Checkpoint {
        try Checkpoint(text: SignedNote.open(cp.note, verifiers: [HeadSigner.verifier(for: f.signer.publicKey)]).text)
    }

    /// Appends `n` entries from 32 concurrent callers (group commit makes this fast).
    func bulk(_ f: AuditFixture, _ n: Int) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for t in 0..<32 {
                group.addTask {
                    for i in stride(from: t, to: n, by: 32) {
                        try await f.log.append(
                            AuditRecord(
                                actor: "a\(i % 7)", role: "app", action: "events:write", resource: "/v1/events",
                                subjectToken: String(format: "%032x", i), outcome: .allowed, requestID: "r\(i)"))
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    @Test func headsAreC2SPCheckpointsOverTheRFC6962TreeOfTheEntries() async throws {
        let f = try AuditFixture(checkpointInterval: 100)
        try await bulk(f, 700)  // crosses two stored 256-leaf nodes
        let head = try #require(try await f.log.checkpoint())
        #expect(head.size == 700)
        let leaves = try leafHashes(f)
        let checkpoint = try opened(head, f)
        #expect(checkpoint.origin == HeadSigner.defaultOrigin(for: f.signer.publicKey))
        #expect(checkpoint.size == 700)
        #expect(checkpoint.rootHash == (try Merkle.root(of: leaves)))
        // Every head the log signed on the way is the root of its prefix.
        let heads = try AuditReader(path: f.path).checkpoints()
        #expect(heads.count >= 3)
        for h in heads {
            #expect(try opened(h, f).rootHash == (try Merkle.root(of: leaves[0..<Int(h.size)])), "head \(h.size)")
        }
        // The stored nodes agree with the tree computed from every leaf, at every size (not only at heads).
        try await DatabaseQueue(path: f.path).read { db in
            for size in [1, 2, 255, 256, 257, 511, 512, 513, 699, 700] {
                let stored = try AuditTree.root(size: Int64(size), in: db).bytes, computed = try Merkle.root(of: leaves[0..<size])
                #expect(stored == computed, "size \(size)")
            }
        }
    }

    @Test func inclusionAndConsistencyProofsVerifyWithTheRFCVerifier() async throws {
        let f = try AuditFixture(checkpointInterval: 97)
        try await bulk(f, 600)
        try await f.log.checkpoint()
        let reader = try AuditReader(path: f.path)
        let heads = try reader.checkpoints()
        var random = TestRandom()
        for _ in 0..<60 {
            let head = heads.randomElement(using: &random)!
            let seq = Int64.random(in: 1...head.size, using: &random)
            let proof = try reader.inclusionProof(sequence: seq, treeSize: head.size)
            #expect(proof.entry.sequence == seq)
            let root = try opened(proof.checkpoint, f).rootHash
            // The leaf is recomputed from the entry itself, not taken from the proof.
            let leaf = proof.entry.leafHash
            #expect(Data(leaf).base64EncodedString() == proof.leafHash)
            try Merkle.verifyInclusion(
                index: UInt64(seq - 1), size: UInt64(head.size), leafHash: leaf,
                proof: proof.hashes.map { [UInt8](Data(base64Encoded: $0)!) }, root: root)
            // And the proof does not prove another entry.
            let other = Merkle.leafHash(Hash.sha256(Array("not this entry".utf8)))
            #expect(throws: MerkleError.self) {
                try Merkle.verifyInclusion(
                    index: UInt64(seq - 1), size: UInt64(head.size), leafHash: other,
                    proof: proof.hashes.map { [UInt8](Data(base64Encoded: $0)!) }, root: root)
            }
        }
        for (a, b) in zip(heads, heads.dropFirst()) {
            for from in [1, a.size / 2 + 1, a.size] {
                let proof = try reader.consistencyProof(from: from, to: b.size)
                let root1 = try Merkle.root(of: try leafHashes(f)[0..<Int(from)])
                try Merkle.verifyConsistency(
                    size1: UInt64(from), size2: UInt64(b.size), root1: root1, root2: try opened(proof.checkpoint, f).rootHash,
                    proof: proof.hashes.map { [UInt8](Data(base64Encoded: $0)!) })
            }
        }
        // A size the log signed no head of (group commit decides where the heads fall, so it is looked up).
        let unsigned = try #require((Int64(3)...599).first { size in !heads.contains { $0.size == size } })
        #expect(throws: AuditProofError.noSuchHead(unsigned, newest: 600)) { try reader.inclusionProof(sequence: 3, treeSize: unsigned) }
        #expect(throws: AuditProofError.noSuchEntry(601, entries: 600)) { try reader.inclusionProof(sequence: 601) }
        #expect(throws: AuditProofError.self) { try reader.consistencyProof(from: 0) }
    }

    /// Across a 2^16-entry chunk boundary (the verifier scans chunks on two threads) and a level-16 stored node.
    @Test func aLogOfMoreThan65536EntriesVerifiesAndItsTreeMatches() async throws {
        let f = try AuditFixture(checkpointInterval: 20_000)
        try await bulk(f, 70_000)
        try await f.log.checkpoint()
        let head = try #require(try AuditReader(path: f.path).newestCheckpoint())
        #expect(try opened(head, f).rootHash == (try Merkle.root(of: try leafHashes(f))))
        let result = try f.verify()
        #expect(result.intact && result.entries == 70_000 && result.signedThrough == 70_000, "\(result.reason ?? "")")
        // A change just after the chunk boundary is found at its sequence number.
        try f.tamper("UPDATE entries SET reason = 'x' WHERE seq = 65537")
        #expect(try f.verify().firstBadSequence == 65537)
    }

    // MARK: Attacks on the real file, each against a head held from before

    /// The attacker's tools: the real signing key, and write access to the file.
    struct Attacker {
        let f: AuditFixture

        /// Rewrites entries from `seq` on with `edit`, recomputes every digest after it, rebuilds the tree, deletes every
        /// head and signs new ones with the real key: a log that verifies on its own.
        func rewrite(from seq: Int64, _ edit: (inout AuditRecord) -> Void) throws {
            let queue = try DatabaseQueue(path: f.path)
            try queue.writeWithoutTransaction { db in
                try db.execute(
                    sql:
                        "DROP TRIGGER IF EXISTS entries_no_update; DROP TRIGGER IF EXISTS entries_no_delete; DROP TRIGGER IF EXISTS tree_heads_no_delete"
                )
                var entries = try Row.fetchAll(db, sql: "SELECT \(AuditReader.columns) FROM entries ORDER BY seq").map(AuditReader.entryByIndex)
                var previous = seq == 1 ? AuditLog.genesisHash : entries[Int(seq) - 2].hash
                for i in Int(seq - 1)..<entries.count {
                    if i == Int(seq - 1) { edit(&entries[i].record) }
                    entries[i].previousHash = previous
                    entries[i].hash = AuditEntry.computeHash(
                        sequence: entries[i].sequence, at: entries[i].at, record: entries[i].record, previousHash: previous)
                    previous = entries[i].hash
                }
                try db.execute(sql: "DELETE FROM entries; DELETE FROM tree_nodes; DELETE FROM tree_heads")
                for e in entries { try AuditLog.insert(e, in: db) }
                try AuditTree.extend(from: 0, to: Int64(entries.count), in: db)
                let heads = try HeadSigner(origin: HeadSigner.defaultOrigin(for: f.signer.publicKey), keys: f.signer)
                try AuditLog.insertHead(size: Int64(entries.count), at: 1, heads: heads, in: db)
            }
        }
    }

    @Test func aCutTailWithItsHeadsDeletedFailsAgainstAHeldHead() async throws {
        let f = try AuditFixture(checkpointInterval: 50)
        try await bulk(f, 300)
        let held = try #require(try await f.log.checkpoint())
        try f.tamper("DELETE FROM entries WHERE seq > 180")
        try f.tamper("DROP TRIGGER IF EXISTS tree_heads_no_delete")
        try f.tamper("DELETE FROM tree_heads WHERE size > 180")
        // A stored tree node for entries past the cut gives it away even on its own…
        let careless = try f.verify()
        #expect(careless.firstBadSequence == 181 && careless.reason?.contains("the log was cut") == true, "\(careless.reason ?? "")")
        // …so a careful attacker deletes those too: on its own the log then verifies, and says that this proves only
        // internal consistency.
        try f.tamper("DELETE FROM tree_nodes WHERE ((idx + 1) << level) > 180")
        let alone = try f.verify()
        #expect(alone.intact && alone.entries == 180)
        #expect(alone.proves == AuditVerification.withoutTrustedHead)
        let result = try AuditReader(path: f.path).verify(publicKey: f.signer.publicKey, trustedHeads: [held.note])
        #expect(result.firstBadSequence == 181)
        #expect(result.reason?.contains("cut") == true, "\(result.reason ?? "")")
    }

    @Test func aRewrittenEntryReSignedWithTheStolenKeyFailsAgainstHeldHeads() async throws {
        let f = try AuditFixture(checkpointInterval: 1000)
        try await bulk(f, 200)
        let early = try #require(try await f.log.checkpoint())  // size 200
        try await bulk(f, 251)
        let late = try #require(try await f.log.checkpoint())  // size 451
        // Entry 448 (an erasure, say) becomes a consent read; everything downstream recomputed and re-signed.
        try Attacker(f: f).rewrite(from: 448) { $0.action = "consent:read" }
        let alone = try f.verify()
        #expect(alone.intact, "the rewritten log verifies on its own: \(alone.reason ?? "")")
        let one = try AuditReader(path: f.path).verify(publicKey: f.signer.publicKey, trustedHeads: [late.note])
        #expect(one.firstBadSequence == 1 && one.reason?.contains("no longer hash to the trusted head of size 451") == true, "\(one.reason ?? "")")
        // With an earlier head too, the rewrite is located after it.
        let both = try AuditReader(path: f.path).verify(publicKey: f.signer.publicKey, trustedHeads: [late.note, early.note])
        #expect(both.firstBadSequence == 201 && both.trustedThrough == 200, "\(both.reason ?? "")")
        // The untouched log matches both.
        let g = try AuditFixture(checkpointInterval: 1000)
        try await bulk(g, 10)
        let gHead = try #require(try await g.log.checkpoint())
        let ok = try AuditReader(path: g.path).verify(publicKey: g.signer.publicKey, trustedHeads: [gHead.note])
        #expect(ok.intact && ok.trustedThrough == 10 && ok.proves == AuditVerification.againstTrusted(10))
    }

    @Test func aForkFailsAgainstTheOtherBranchsHead() async throws {
        let f = try AuditFixture(checkpointInterval: 1000)
        try await bulk(f, 100)
        let branchA = try #require(try await f.log.checkpoint())
        // The other branch: the same key, the same size, one entry different.
        try Attacker(f: f).rewrite(from: 60) { $0.reason = "other history" }
        let branchB = try #require(try AuditReader(path: f.path).newestCheckpoint())
        #expect(branchB.size == branchA.size && branchB.rootHash != branchA.rootHash)
        let result = try AuditReader(path: f.path).verify(publicKey: f.signer.publicKey, trustedHeads: [branchA.note])
        #expect(result.firstBadSequence == 1 && !result.intact)
        // A witness that held branch A refuses branch B.
        let verifier = try HeadSigner.verifier(for: f.signer.publicKey)
        let witness = try WitnessState(directory: NSTemporaryDirectory() + "veil-witness-\(UUID().uuidString)", verifier: verifier)
        try witness.record(branchA.note, size: UInt64(branchA.size))
        await #expect(throws: WitnessError.fork(size: 100)) { try await witness.check(branchB.note) { _, _ in [] } }
    }

    @Test func aWitnessAcceptsGrowthAndRefusesAHeadThatGoesBackwardsOrDoesNotExtend() async throws {
        let f = try AuditFixture(checkpointInterval: 1000)
        let verifier = try HeadSigner.verifier(for: f.signer.publicKey)
        let witness = try WitnessState(directory: NSTemporaryDirectory() + "veil-witness-\(UUID().uuidString)", verifier: verifier)
        let reader = try AuditReader(path: f.path)
        func proof(_ from: UInt64, _ to: UInt64) throws -> [[UInt8]] {
            try reader.consistencyProof(from: Int64(from), to: Int64(to)).hashes.map { [UInt8](Data(base64Encoded: $0)!) }
        }
        try await bulk(f, 40)
        let first = try #require(try await f.log.checkpoint())
        let (h1, advanced1) = try await witness.check(first.note, consistency: proof)
        #expect(advanced1 && h1.size == 40)
        try witness.record(first.note, size: h1.size)
        try await bulk(f, 25)
        let second = try #require(try await f.log.checkpoint())
        let (h2, advanced2) = try await witness.check(second.note, consistency: proof)
        #expect(advanced2 && h2.size == 65)
        try witness.record(second.note, size: h2.size)
        // Served an older head: backwards.
        await #expect(throws: WitnessError.wentBackwards(held: 65, served: 40)) { try await witness.check(first.note, consistency: proof) }
        // A head signed by another key under the log's name, and one signed by the log's key whose checkpoint names
        // another origin: both refused for what they are, before any proof is asked for.
        let stranger = try HeadSigner(origin: verifier.name, keys: SigningKeyPair.generate()).sign(
            size: 70, root: [UInt8](repeating: 1, count: 32), at: 0)
        func refusedAsBadSignature(_ note: String) async -> Bool {
            do {
                _ = try await witness.check(note) { _, _ in
                    Issue.record("no proof may be asked for a head that does not verify"); return []
                }
                return false
            } catch {
                if case .badSignature = error { return true }
                return false
            }
        }
        #expect(await refusedAsBadSignature(stranger))
        let otherOrigin = try SignedNote.sign(
            text: Checkpoint(origin: "veil.audit/other", size: 70, rootHash: [UInt8](repeating: 1, count: 32)).text,
            name: verifier.name, with: f.signer)
        #expect(await refusedAsBadSignature(otherOrigin))
        // A larger head, correctly signed, whose tree does not extend the held one (the log was rewritten below 65).
        try Attacker(f: f).rewrite(from: 10) { $0.actor = "someone else" }
        try await bulk(f, 5)
        let rewritten = try #require(try await f.log.checkpoint())
        await #expect {
            try await witness.check(rewritten.note, consistency: proof)
        } throws: { error in
            guard case .inconsistent(from: 65, to: 70, _) = error as? WitnessError else { return false }
            return true
        }
        // A log that signs a larger head and keeps refusing its proof is misbehaving after a few attempts.
        var attempts: [WitnessError] = []
        for _ in 0..<WitnessState.proofAttempts {
            do {
                _ = try await witness.check(rewritten.note) { _, _ in throw URLError(.timedOut) }
            } catch {
                attempts.append(error)
            }
        }
        #expect(attempts.dropLast().allSatisfy { !$0.isMisbehaviour })
        #expect(attempts.last == .unproven(from: 65, to: 70, attempts: WitnessState.proofAttempts))
        // State: the newest head survives a lost latest.note (read back from heads/), and never moves backwards.
        try FileManager.default.removeItem(atPath: witness.directory + "/latest.note")
        #expect(try witness.latest()?.checkpoint.size == 65)
        try witness.record(first.note, size: 40)
        #expect(try witness.latest()?.checkpoint.size == 65)
        // The witness's heads, as trusted heads, catch the rewrite in the file.
        let result = try AuditReader(path: f.path).verify(publicKey: f.signer.publicKey, trustedHeads: [first.note, second.note])
        #expect(result.firstBadSequence == 1)
    }

    @Test func aTrustedHeadNotSignedByTheLogsKeyFailsAndAMalformedOneIsRefusedAsInput() async throws {
        let f = try AuditFixture()
        try await f.fill(12)
        let origin = HeadSigner.defaultOrigin(for: f.signer.publicKey)
        // Signed under this log's name by another key (the key on the gateway was replaced, say): the log fails.
        let stranger = try HeadSigner(origin: origin, keys: SigningKeyPair.generate()).sign(size: 12, root: [UInt8](repeating: 7, count: 32), at: 0)
        let result = try AuditReader(path: f.path).verify(publicKey: f.signer.publicKey, trustedHeads: [stranger])
        #expect(result.firstBadSequence == 1 && result.reason?.contains("not signed by \(origin)'s key") == true, "\(result.reason ?? "")")
        // Another log's head, signed with the same key: not this log's either.
        let other = try HeadSigner(origin: "veil.audit/other", keys: f.signer).sign(size: 12, root: [UInt8](repeating: 7, count: 32), at: 0)
        #expect(try AuditReader(path: f.path).verify(publicKey: f.signer.publicKey, trustedHeads: [other]).firstBadSequence == 1)
        // Not a signed checkpoint at all, or one claiming more entries than a log can hold: the input is refused.
        #expect { try AuditReader(path: f.path).verify(publicKey: f.signer.publicKey, trustedHeads: ["not a note"]) } throws: { error in
            (error as? AuditError)?.invalidInput == true
        }
        let huge = try SignedNote.sign(
            text: Checkpoint(origin: origin, size: UInt64.max, rootHash: [UInt8](repeating: 7, count: 32)).text, name: origin, with: f.signer)
        #expect { try AuditReader(path: f.path).verify(publicKey: f.signer.publicKey, trustedHeads: [huge]) } throws: { error in
            (error as? AuditError)?.invalidInput == true
        }
        // An empty head (size 0) is consistent with every log; two heads of one size with different roots are a fork.
        let empty = try HeadSigner(origin: origin, keys: f.signer).sign(size: 0, root: Merkle.emptyRoot, at: 0)
        let head = try #require(try await f.log.checkpoint())
        let ok = try AuditReader(path: f.path).verify(publicKey: f.signer.publicKey, trustedHeads: [empty, head.note])
        #expect(ok.intact && ok.trustedThrough == 12, "\(ok.reason ?? "")")
        let fork = try HeadSigner(origin: origin, keys: f.signer).sign(size: 12, root: [UInt8](repeating: 7, count: 32), at: 0)
        let forked = try AuditReader(path: f.path).verify(publicKey: f.signer.publicKey, trustedHeads: [head.note, fork])
        #expect(forked.firstBadSequence == 1 && forked.reason?.contains("fork") == true, "\(forked.reason ?? "")")
    }

    /// Edits that keep every digest valid but that the writer never makes: sequence numbers that are not integers
    /// (between or past the real ones), a "-" where the hash encodes an absent token, a NULL where text belongs.
    @Test(arguments: ["real", "text", "dash", "null", "huge"])
    func editsTheHashCannotSeeAreCaught(_ edit: String) async throws {
        let f = try AuditFixture(checkpointInterval: 1000)
        try await f.fill(20)
        try await f.log.append(AuditRecord(actor: "a", role: "app", action: "events:write", resource: "/v1/events", outcome: .allowed, reason: ""))
        let held = try #require(try await f.log.checkpoint())
        try await DatabaseQueue(path: f.path).writeWithoutTransaction { db in
            switch edit {
            case "real", "text":
                // The table rebuilt without INTEGER PRIMARY KEY, then a forged erasure slipped in after entry 20.
                try db.execute(
                    sql: """
                        DROP TRIGGER entries_no_update; DROP TRIGGER entries_no_delete;
                        CREATE TABLE e2 AS SELECT * FROM entries; DROP TABLE entries; ALTER TABLE e2 RENAME TO entries;
                        INSERT INTO entries SELECT \(edit == "real" ? "20.5" : "'20x'"), at, actor, role, 'subjects:erase', resource, subject_token, purpose,
                            outcome, reason, request_id, prev_hash, '0' FROM entries WHERE seq = 20;
                        """)
            case "dash":
                try db.execute(sql: "DROP TRIGGER entries_no_update; UPDATE entries SET purpose = '-' WHERE seq = 7 AND purpose IS NULL")
                #expect(db.changesCount == 1)
            case "null":
                try db.execute(
                    sql: """
                        DROP TRIGGER entries_no_update; DROP TRIGGER entries_no_delete;
                        CREATE TABLE e2 AS SELECT * FROM entries; DROP TABLE entries; ALTER TABLE e2 RENAME TO entries;
                        UPDATE entries SET reason = NULL WHERE seq = 21 AND reason = '';
                        """)
                #expect(db.changesCount == 1)
            default:
                try db.execute(
                    sql:
                        "DROP TRIGGER entries_no_update; INSERT INTO entries SELECT 9223372036854775807, at, actor, role, action, resource, subject_token, purpose, outcome, reason, request_id, prev_hash, hash FROM entries WHERE seq = 20"
                )
            }
        }
        #expect(try f.string("SELECT COUNT(*) FROM entries") == (edit == "dash" || edit == "null" ? "21" : "22"), "the edit was made")
        let result = try AuditReader(path: f.path).verify(publicKey: f.signer.publicKey, trustedHeads: [held.note])
        #expect(!result.intact, "\(edit): \(result.reason ?? "")")
    }

    /// Stored nodes are what proofs and signed roots are built from: a forged one fails verification, and a log cut
    /// and regrown past a stored node's block replaces it with the node of the new entries.
    @Test func storedTreeNodesAreCheckedAndAStaleOneIsReplaced() async throws {
        let f = try AuditFixture(checkpointInterval: 100_000)
        try await bulk(f, 600)
        try f.tamper("UPDATE tree_nodes SET hash = zeroblob(32) WHERE level = 8 AND idx = 1")
        let forged = try f.verify()
        #expect(forged.firstBadSequence == 257 && forged.reason?.contains("stored tree node") == true, "\(forged.reason ?? "")")
        // A node taken away (a range read of the stored nodes would hand a proof its neighbour's), or moved to a
        // level the log never stores: both edits of the stored tree.
        let h = try AuditFixture(checkpointInterval: 100_000)
        try await bulk(h, 1_000)
        #expect(try h.verify().intact)
        try h.tamper("DELETE FROM tree_nodes WHERE level = 8 AND idx = 2")
        let missing = try h.verify()
        #expect(missing.firstBadSequence == 513 && missing.reason?.contains("lacks the node") == true, "\(missing.reason ?? "")")
        try h.tamper("INSERT INTO tree_nodes (level, idx, hash) VALUES (8, 2, zeroblob(32))")
        try h.tamper("UPDATE tree_nodes SET hash = (SELECT hash FROM tree_nodes WHERE level = 8 AND idx = 1) WHERE level = 8 AND idx = 2")
        #expect(try h.verify().firstBadSequence == 513)
        try h.tamper("DELETE FROM tree_nodes WHERE level = 8 AND idx = 2")
        try h.tamper("INSERT INTO tree_nodes (level, idx, hash) SELECT 9, 1, hash FROM tree_nodes WHERE level = 8 AND idx = 1")
        let moved = try h.verify()
        #expect(moved.firstBadSequence == 1 && moved.reason?.contains("Veil never writes") == true, "\(moved.reason ?? "")")
        // The witness's scenario: a head held at 256, the log cut to 200 with its heads, then regrown past 256.
        let g = try AuditFixture(checkpointInterval: 100_000)
        try await bulk(g, 256)
        let held = try #require(try await g.log.checkpoint())
        try g.tamper("DELETE FROM entries WHERE seq > 200")
        try g.tamper("DROP TRIGGER IF EXISTS tree_heads_no_delete")
        try g.tamper("DELETE FROM tree_heads")
        try await bulk(g, 400)
        let regrown = try #require(try await g.log.checkpoint())
        // The new head is signed over the new entries, so it does not extend the held one…
        let reader = try AuditReader(path: g.path)
        #expect(throws: MerkleError.self) {
            try Merkle.verifyConsistency(
                size1: 256, size2: UInt64(regrown.size), root1: [UInt8](Data(base64Encoded: held.rootHash)!),
                root2: [UInt8](Data(base64Encoded: regrown.rootHash)!),
                proof: try reader.consistencyProof(from: 256, to: regrown.size).hashes.map { [UInt8](Data(base64Encoded: $0)!) })
        }
        // …and the log itself is consistent with its new head (the stale node was replaced, not kept).
        let result = try reader.verify(publicKey: g.signer.publicKey)
        #expect(result.intact && result.signedThrough == regrown.size, "\(result.reason ?? "")")
    }

    /// Damage named at entry 1 (here a stored node where the log never writes one) must not hide an entry rewritten
    /// further on: verification reports every failure it found, by sequence number, up to a bound.
    @Test func everyFailureIsReportedNotOnlyTheFirst() async throws {
        let f = try AuditFixture(checkpointInterval: 100_000)
        try await bulk(f, 600)
        #expect(try f.verify().failures == nil)
        try f.tamper("INSERT INTO tree_nodes (level, idx, hash) SELECT 9, 1, hash FROM tree_nodes WHERE level = 8 AND idx = 1")
        try f.tamper("DROP TRIGGER IF EXISTS entries_no_update")
        try f.tamper("UPDATE entries SET action = 'consent:read' WHERE seq = 450")
        let result = try f.verify()
        #expect(result.firstBadSequence == 1 && result.reason?.contains("Veil never writes") == true, "\(result.reason ?? "")")
        let found = result.failures ?? []
        #expect(found.first == AuditFailure(sequence: 1, reason: result.reason ?? ""), "\(found)")
        #expect(found.contains { $0.sequence == 450 }, "the rewritten entry is hidden behind the first failure: \(found)")
        #expect(found.map(\.sequence) == found.map(\.sequence).sorted() && Set(found).count == found.count, "\(found)")
        // What an officer's client reads (`POST /v1/audit/verify` answers this value as JSON).
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(result)) as? [String: Any]
        let listed = json?["failures"] as? [[String: Any]]
        #expect(listed?.count == found.count && listed?.contains { $0["sequence"] as? Int == 450 } == true, "\(json ?? [:])")
        // A file failing everywhere is reported up to a bound: here 25 heads a stranger signed under this log's name.
        let origin = HeadSigner.defaultOrigin(for: f.signer.publicKey)
        let stranger = try HeadSigner(origin: origin, keys: SigningKeyPair.generate())
        let notes = try (1...25).map { try stranger.sign(size: Int64($0), root: [UInt8](repeating: 7, count: 32), at: 0) }
        let many = try AuditReader(path: f.path).verify(publicKey: f.signer.publicKey, trustedHeads: notes)
        #expect(many.failures?.count == AuditVerification.maxReportedFailures && many.firstBadSequence == 1, "\(many.failures ?? [])")
    }

    /// A log written before the tree: its chain checkpoints still verify, and opening it builds the tree.
    @Test func aLogFromBeforeTheTreeIsUpgradedAndStillVerifies() async throws {
        let dir = NSTemporaryDirectory() + "veil-audit-legacy-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/audit.sqlite"
        let signer = SigningKeyPair.generate()
        let queue = try DatabaseQueue(path: path)
        var migrator = DatabaseMigrator()
        AuditLog.Migrations().register(in: &migrator)
        try migrator.migrate(queue, upTo: "audit.v1.entries")
        try await queue.write { db in
            var previous = AuditLog.genesisHash
            for seq in Int64(1)...600 {
                let record = AuditRecord(
                    actor: "old", role: "app", action: "events:write", resource: "/v1/events", outcome: .allowed, requestID: "r\(seq)")
                let hash = AuditEntry.computeHash(sequence: seq, at: 1000 + seq, record: record, previousHash: previous)
                try AuditLog.insert(AuditEntry(sequence: seq, at: 1000 + seq, record: record, previousHash: previous, hash: hash), in: db)
                previous = hash
                if seq % 250 == 0 {
                    var cp = LegacyCheckpoint(sequence: seq, headHash: hash, at: 5, signature: "")
                    cp.signature = signer.sign(cp.message).hexString
                    try db.execute(
                        sql: "INSERT INTO checkpoints (seq, head_hash, at, signature) VALUES (?, ?, ?, ?)",
                        arguments: [cp.sequence, cp.headHash, cp.at, cp.signature])
                }
            }
        }
        let log = try AuditLog(path: path, signer: signer, checkpointInterval: 1000)
        try await log.append(AuditRecord(actor: "new", role: "app", action: "events:write", resource: "/v1/events", outcome: .allowed))
        let head = try #require(try await log.checkpoint())
        let reader = try AuditReader(path: path)
        let result = try reader.verify(publicKey: signer.publicKey, trustedHeads: [head.note])
        #expect(result.intact && result.entries == 601 && result.checkpoints == 3 && result.signedThrough == 601, "\(result.reason ?? "")")
        let leaves = try await DatabaseQueue(path: path).read { db in
            try String.fetchAll(db, sql: "SELECT hash FROM entries ORDER BY seq").map { Merkle.leafHash([UInt8](hexString: $0)!) }
        }
        let proof = try reader.inclusionProof(sequence: 17)
        try Merkle.verifyInclusion(
            index: 16, size: 601, leafHash: leaves[16], proof: proof.hashes.map { [UInt8](Data(base64Encoded: $0)!) },
            root: try Merkle.root(of: leaves))
        // The legacy checkpoints are still checked: a cut below the last one is caught.
        try await DatabaseQueue(path: path).writeWithoutTransaction { db in
            try db.execute(
                sql: "DROP TRIGGER entries_no_delete; DROP TRIGGER tree_heads_no_delete; DELETE FROM entries WHERE seq > 400; DELETE FROM tree_heads")
        }
        #expect(try reader.verify(publicKey: signer.publicKey).firstBadSequence == 401)
    }
}
