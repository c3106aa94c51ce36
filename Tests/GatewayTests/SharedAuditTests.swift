@testable import Audit
import Foundation
import Hummingbird
import HummingbirdTesting
import Persistence
import Storage
import Testing
import Vault
@testable import VeilCore

/// Several gateways' audit logs as one: each ships its log to the database they share, and any of them verifies and
/// queries every log. The copy is attacked as someone with write access to the database would: rewritten, its query
/// columns edited, cut with its heads, shipped under a name another gateway holds.
// Part of SeveralGatewaysTests' suite: one test of two gateways at a time.
extension SeveralGatewaysTests {
    @Test func everyGatewaysLogIsQueriedAndVerifiedThroughAnyOfThem() async throws {
        let (a, b, watch) = try await Self.pair()
        defer { watch.cancel() }
        let officer = a.keys["compliance-officer"], reader = a.keys["recommendation-client"]
        let token = a.token(Self.shopper).rawValue
        try await a.app.test(.router) { viaA in
            try await seedShop(viaA, a)
            try await b.app.test(.router) { viaB in
                // The person's consent read through both gateways: an entry naming them in each log (a read that needs no
                // model, which B may still be loading).
                let consents = "/v1/consents/shopper-0%40example.com"
                for _ in 0..<3 { #expect(try await viaB.call(.get, consents, key: officer).status == 200) }
                #expect(try await viaA.call(.get, consents, key: officer).status == 200)
                let bHead = try #require(try await b.service.audit.checkpoint())
                let bShipping = try #require(b.service.sharedAudit)
                let shipped = try #require(try await bShipping.shipPending())  // what B's background shipping does
                #expect(shipped == Int(b.service.audit.count))

                let found = try await viaA.call(.get, "/v1/audit?subject=shopper-0%40example.com&limit=1000", key: officer)
                let entries = try #require(found.json["entries"] as? [[String: Any]])
                #expect(Set(entries.compactMap { $0["log"] as? String }) == ["gw-a", "gw-b"], "A's query finds B's entries too")
                #expect(entries.filter { $0["log"] as? String == "gw-b" }.count == 3)
                // The copy holds what the file holds: tokens, never the person's id.
                #expect(try a.psql("SELECT COUNT(*) FROM audit_archive WHERE log = 'gw-b'").trimmed == String(shipped))
                let dump = try a.postgresDump()
                #expect(dump.range(of: Data(Self.shopper.utf8)) == nil && dump.range(of: Data("shopper-0%40example.com".utf8)) == nil)

                func verify(_ heads: [String] = []) async throws -> (own: [String: Any], logs: [String: [String: Any]]) {
                    let response =
                        heads.isEmpty
                        ? try await viaA.call(.get, "/v1/audit/verify", key: officer)
                        : try await viaA.call(.post, "/v1/audit/verify", key: officer, json: ["trusted_heads": heads])
                    #expect(response.status == 200)
                    let logs = try #require(response.json["logs"] as? [[String: Any]])
                    return (response.json, Dictionary(uniqueKeysWithValues: logs.map { ($0["log"] as? String ?? "?", $0) }))
                }
                // A witness of B's log reaching A (through a load balancer, say) asks for it by name: A answers from
                // B's copy, and the proof between two of B's heads checks.
                _ = try await viaB.call(.get, Self.list, key: reader)
                let later = try #require(try await b.service.audit.checkpoint())
                _ = try await bShipping.shipPending()
                let head = try await viaA.call(.get, "/v1/audit/checkpoint?log=gw-b", key: officer)
                #expect(head.json["note"] as? String == later.note)
                let proof = try await viaA.call(.get, "/v1/audit/consistency?log=gw-b&from=\(bHead.size)&to=\(later.size)", key: officer)
                let hashes = try #require(proof.json["hashes"] as? [String]).map { [UInt8](Data(base64Encoded: $0)!) }
                try Merkle.verifyConsistency(
                    size1: UInt64(bHead.size), size2: UInt64(later.size), root1: [UInt8](Data(base64Encoded: bHead.rootHash)!),
                    root2: [UInt8](Data(base64Encoded: later.rootHash)!), proof: hashes)
                let direct = try await viaB.call(.get, "/v1/audit/consistency?from=\(bHead.size)&to=\(later.size)", key: officer)
                #expect(direct.json["hashes"] as? [String] == proof.json["hashes"] as? [String])
                #expect(try await viaA.call(.get, "/v1/audit/checkpoint?log=gw-zz", key: officer).status == 404)
                #expect(try await viaA.call(.get, "/v1/audit/checkpoint?log=Not%20A%20Name", key: officer).status == 400)

                var result = try await verify([bHead.note])
                #expect(result.own["log"] as? String == "gw-a" && result.own["firstBadSequence"] == nil, "B's head is not held against A's log")
                #expect(Set(result.logs.keys) == ["gw-a", "gw-b"])
                #expect(result.logs.values.allSatisfy { $0["firstBadSequence"] == nil })
                #expect(result.logs["gw-b"]?["trustedThrough"] as? Int == Int(bHead.size))

                // A head of B's given with B's verifier key (a witness's state, say) checks B's copy, not A's file.
                let key = try HeadSigner.verifier(for: b.service.ring.auditSigner.publicKey, logName: "gw-b").verifierKey
                let keyed = try await viaA.call(.post, "/v1/audit/verify", key: officer, json: ["trusted_heads": [bHead.note], "verifier_key": key])
                #expect(keyed.json["firstBadSequence"] == nil)
                let bKeyed = (keyed.json["logs"] as? [[String: Any]])?.first { $0["log"] as? String == "gw-b" }
                #expect(bKeyed?["trustedHeads"] as? Int == 1 && bKeyed?["firstBadSequence"] == nil)
                #expect(bKeyed?["trustedThrough"] as? Int == Int(bHead.size))

                // Rewritten in the copy, body and query columns alike: the digest gives it away.
                let allowed = try #require(Int(a.psql("SELECT MIN(seq) FROM audit_archive WHERE log = 'gw-b' AND outcome = 'allowed'").trimmed))
                let b2 = "log = 'gw-b' AND seq = \(allowed)"
                try a.psql(
                    """
                    UPDATE audit_archive SET outcome = 'denied',
                        body = convert_to(replace(convert_from(body, 'UTF8'), '"outcome":"allowed"', '"outcome":"denied"'), 'UTF8') WHERE \(b2)
                    """)
                result = try await verify()
                #expect(result.logs["gw-b"]?["firstBadSequence"] as? Int == allowed)
                #expect((result.logs["gw-b"]?["reason"] as? String)?.contains("does not match its hash") == true)
                try a.psql(
                    """
                    UPDATE audit_archive SET outcome = 'allowed',
                        body = convert_to(replace(convert_from(body, 'UTF8'), '"outcome":"denied"', '"outcome":"allowed"'), 'UTF8') WHERE \(b2)
                    """)
                #expect(try await verify().logs["gw-b"]?["firstBadSequence"] == nil)

                // Only the indexed column edited, so that a query for the person misses the entry: verify names it.
                let named = try #require(Int(a.psql("SELECT MIN(seq) FROM audit_archive WHERE log = 'gw-b' AND subject_token = '\(token)'").trimmed))
                try a.psql("UPDATE audit_archive SET subject_token = NULL WHERE log = 'gw-b' AND seq = \(named)")
                result = try await verify()
                #expect(result.logs["gw-b"]?["firstBadSequence"] as? Int == named)
                #expect((result.logs["gw-b"]?["reason"] as? String)?.contains("query columns") == true)
                try a.psql("UPDATE audit_archive SET subject_token = '\(token)' WHERE log = 'gw-b' AND seq = \(named)")

                // Cut after the first entry, with every head: no head vouches for what is left, and the head an officer
                // kept shows the cut.
                try a.psql("DELETE FROM audit_archive WHERE log = 'gw-b' AND seq > 1; DELETE FROM audit_archive_heads WHERE log = 'gw-b'")
                #expect((try await verify().logs["gw-b"]?["reason"] as? String)?.contains("no head signed") == true)
                result = try await verify([bHead.note])
                #expect(result.logs["gw-b"]?["firstBadSequence"] as? Int == 2)
                #expect((result.logs["gw-b"]?["reason"] as? String)?.contains("cut") == true)
                // B ships again what its file still holds: the copy is whole again.
                _ = try await b.service.sharedAudit?.shipPending()
                #expect(try await verify([bHead.note]).logs["gw-b"]?["trustedThrough"] as? Int == Int(bHead.size))

                // An entry before the first, a log under a name no gateway can have, a log copied under a name of
                // its own without heads: each fails, none hides the others, and a query shows no row before entry 1.
                try a.psql(
                    """
                    INSERT INTO audit_archive (log, seq, at, actor, action, outcome, subject_token, hash, body)
                        SELECT log, 0, at, actor, action, outcome, subject_token, hash, body FROM audit_archive WHERE log = 'gw-b' AND seq = 2;
                    INSERT INTO audit_archive (log, seq, at, actor, action, outcome, subject_token, hash, body)
                        SELECT 'Not A Name', seq, at, actor, action, outcome, subject_token, hash, body FROM audit_archive WHERE log = 'gw-b' AND seq = 1;
                    INSERT INTO audit_archive (log, seq, at, actor, action, outcome, subject_token, hash, body)
                        SELECT 'gw-x', seq, at, actor, action, outcome, subject_token, hash, body FROM audit_archive WHERE log = 'gw-b' AND seq >= 1
                    """)
                result = try await verify()
                #expect(result.logs["gw-b"]?["firstBadSequence"] as? Int == 0)
                #expect(result.logs["Not A Name"]?["firstBadSequence"] as? Int == 1)
                #expect((result.logs["gw-x"]?["reason"] as? String)?.contains("no head signed") == true)
                #expect(result.logs["gw-a"]?["firstBadSequence"] == nil)
                #expect(result.own["allLogsIntact"] as? Bool == false && result.own["firstBadSequence"] == nil)
                let everything = try await viaA.call(.get, "/v1/audit?actor=p-recommendation-client&limit=1000", key: officer)
                let rows = try #require(everything.json["entries"] as? [[String: Any]])
                #expect(!rows.contains { $0["log"] as? String == "gw-b" && $0["sequence"] as? Int == 0 })
                try a.psql("DELETE FROM audit_archive WHERE seq < 1 OR log IN ('Not A Name', 'gw-x')")

                // Rows appended after B's last signed head (no head vouches for them): B replaces them from its file.
                try a.psql(
                    """
                    INSERT INTO audit_archive (log, seq, at, actor, action, outcome, subject_token, hash, body)
                        SELECT log, seq + 1, at, actor, action, outcome, subject_token, hash, body FROM audit_archive
                        WHERE log = 'gw-b' AND seq = (SELECT MAX(seq) FROM audit_archive WHERE log = 'gw-b')
                    """)
                #expect(try await verify().logs["gw-b"]?["firstBadSequence"] != nil)
                _ = try await b.service.sharedAudit?.shipPending()
                #expect(try await verify([bHead.note]).logs["gw-b"]?["firstBadSequence"] == nil)

                // A real head of B's copied into a row claiming another size is no evidence: B's next shipment removes it
                // (it would otherwise hold back every later head) and the copy verifies.
                try a.psql(
                    """
                    INSERT INTO audit_archive_heads (log, size, at, note)
                        SELECT log, size + 1000000, at, note FROM audit_archive_heads WHERE log = 'gw-b' ORDER BY size DESC LIMIT 1
                    """)
                _ = try await b.service.sharedAudit?.shipPending()
                #expect(try a.psql("SELECT COUNT(*) FROM audit_archive_heads WHERE log = 'gw-b' AND size > 1000000").trimmed == "0")
                #expect(try await verify([bHead.note]).logs["gw-b"]?["firstBadSequence"] == nil)

                // A copy that holds a head signed with the audit key that B's file does not (B's file was cut, or
                // another gateway ships under its name) is evidence: B stops shipping rather than overwrite it.
                let signer = try HeadSigner(
                    origin: HeadSigner.defaultOrigin(for: b.service.ring.auditSigner.publicKey, logName: "gw-b"), keys: b.service.ring.auditSigner)
                let forged = signer.sign(size: b.service.audit.count + 5, root: [UInt8](repeating: 7, count: 32), at: 0)
                try a.psql(
                    """
                    INSERT INTO audit_archive_heads (log, size, at, note) VALUES ('gw-b', \(b.service.audit.count + 5), 0, '\(forged)');
                    UPDATE audit_archive SET hash = repeat('0', 64) WHERE log = 'gw-b' AND seq = (SELECT MAX(seq) FROM audit_archive WHERE log = 'gw-b')
                    """)
                await #expect(throws: SharedAudit.Diverged.self) { try await b.service.sharedAudit?.shipPending() }

                // Every row of B's deleted: the log is gone from the database, and the officer's head says it was there.
                try a.psql("DELETE FROM audit_archive WHERE log = 'gw-b'; DELETE FROM audit_archive_heads WHERE log = 'gw-b'")
                result = try await verify([bHead.note])
                #expect((result.logs["gw-b"]?["reason"] as? String)?.contains("cut") == true)
            }
        }
    }

    /// A log whose first head lies beyond one shipment's page (a gateway that kept its log before the database was
    /// shared, say): its first shipment carries a head signed over what it ships, so a verifier never finds the log's
    /// entries in the database with no head vouching for them, which reads as a log no gateway signed.
    @Test func aLogsFirstShipmentCarriesAHeadWhateverItsBacklog() async throws {
        // B signs heads only by age (30 s) or when asked: none while the backlog builds up.
        let (a, b, watch) = try await Self.pair(bHeadInterval: 1_000_000)
        defer { watch.cancel() }
        #expect(try a.psql("SELECT COUNT(*) FROM audit_archive_heads WHERE log = 'gw-b'").trimmed == "0", "B has shipped no head yet")
        let backlog = 2 * SharedAudit.page + 500
        try await withThrowingTaskGroup(of: Void.self) { group in
            for n in 0..<backlog {
                group.addTask {
                    _ = try await b.service.audit.append(
                        AuditRecord(actor: "app-\(n)", role: "app", action: "events:write", resource: "/v1/events", outcome: .allowed))
                }
            }
            try await group.waitForAll()
        }
        #expect(try await b.service.audit.newestCheckpoint() == nil, "no head before the first shipment")
        let officer = a.keys["compliance-officer"]
        @Sendable func logB(_ viaA: some TestClientProtocol) async throws -> [String: Any]? {
            let verified = try await viaA.call(.get, "/v1/audit/verify", key: officer)
            return (verified.json["logs"] as? [[String: Any]])?.first { $0["log"] as? String == "gw-b" }
        }
        let shipping = try #require(b.service.sharedAudit)
        try await a.app.test(.router) { viaA in
            // One page, as a request's own shipment or a verification makes: with a head over it.
            #expect(try await shipping.shipPending(pages: 1) == SharedAudit.page)
            #expect(try a.psql("SELECT size FROM audit_archive_heads WHERE log = 'gw-b'").trimmed == String(SharedAudit.page))
            var found = try await logB(viaA)
            #expect(found?["firstBadSequence"] == nil && found?["signedThrough"] as? Int == SharedAudit.page, "\(found ?? [:])")
            // The rest, with the head the first shipment signed over the whole backlog.
            let rest = try #require(try await shipping.shipPending())
            let total = Int(b.service.audit.count)
            #expect(SharedAudit.page + rest == total && total >= backlog)
            found = try await logB(viaA)
            #expect(found?["firstBadSequence"] == nil && found?["signedThrough"] as? Int == total, "\(found ?? [:])")
        }
        // B's file holds the head it shipped: its own verification passes and the copy is B's.
        #expect(try await b.service.verifyAuditLog().intact)
    }

    /// A gateway proves another's log from its copy only up to a size (the copy's digests are read whole): past it the
    /// answer is ProofTooLarge (the route's 422 proof_too_large, on which `veil audit witness` stops and says where
    /// to point), never a proof. Shown with a limit of a few entries instead of a million.
    @Test func aProofOfAnotherLogPastTheLimitIsRefusedNotComputed() async throws {
        let (a, b, watch) = try await Self.pair()
        defer { watch.cancel() }
        try await b.app.test(.router) { viaB in
            for _ in 0..<3 { _ = try await viaB.call(.get, "/v1/consents/shopper-0%40example.com", key: b.keys["compliance-officer"]) }
        }
        let head = try #require(try await b.service.audit.checkpoint())
        _ = try await b.service.sharedAudit?.shipPending()
        let archive = try #require(a.service.store.auditArchive)
        func proving(upTo limit: Int64) -> SharedAudit {
            SharedAudit(
                archive: archive, audit: a.service.audit, log: "gw-a", publicKey: a.service.ring.auditSigner.publicKey,
                logger: a.service.logger, proofSizeLimit: limit)
        }
        let proof = try await proving(upTo: head.size).consistencyProof(of: "gw-b", from: 1, to: head.size)
        #expect(proof.to == head.size)
        await #expect(throws: SharedAudit.ProofTooLarge.self) {
            try await proving(upTo: head.size - 1).consistencyProof(of: "gw-b", from: 1, to: head.size)
        }
    }

    @Test func aSecondGatewayCannotKeepALogUnderTheNameAnotherHolds() async throws {
        let (a, b, watch) = try await Self.pair()
        defer { watch.cancel() }
        try await #require(a.service.sharedAudit).claim()
        let archive = try #require(b.service.store.auditArchive)
        await #expect(throws: StorageError.self) { try await archive.claim(log: "gw-a") }
        try await archive.claim(log: "gw-b")
    }
}

extension String {
    fileprivate var trimmed: String { trimmingCharacters(in: .whitespacesAndNewlines) }
}
