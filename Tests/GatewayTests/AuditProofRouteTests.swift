import Audit
import Foundation
import VeilCore
import Gateway
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Policy
import Testing
import Vault

/// Issue #23 over HTTP: every /v1 answer names its own audit entry, whose inclusion proof a client can fetch and check
/// against a signed head with nothing but the verifier key; heads, consistency proofs and verification against held
/// heads are served to the roles that may have them.
@Suite struct AuditProofRouteTests {
    func bytes(_ base64: Any?) -> [UInt8] { [UInt8](Data(base64Encoded: base64 as? String ?? "") ?? Data()) }

    @Test func aResponsesOwnEntryIsProvablyInTheLog() async throws {
        let clock = TestClock(Date())
        let f = try GatewayFixture(now: clock.now)
        let verifier = try HeadSigner.verifier(for: f.service.ring.auditSigner.publicKey)
        try await f.app.test(.router) { client in
            let consentCall = try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("u-proof"))
            #expect(consentCall.status == 201)
            let seq = try #require(consentCall.headers[HTTPField.Name("Veil-Audit-Entry")!].flatMap { Int64($0) })
            // No head covers the entry yet: the route signs one rather than fail.
            let proof = try await client.call(.get, "/v1/audit/entries/\(seq)/proof", key: f.keys["compliance-officer"])
            #expect(proof.status == 200, "\(proof.body)")
            let checkpoint = try #require(proof.json["checkpoint"] as? [String: Any])
            let head = try Checkpoint(text: SignedNote.open(checkpoint["note"] as? String ?? "", verifiers: [verifier]).text)
            #expect(Int64(head.size) >= seq)
            // The client rebuilds the leaf from the entry it was given, and checks that it is the access it made.
            let entryJSON = try JSONSerialization.data(withJSONObject: try #require(proof.json["entry"]))
            let entry = try JSONDecoder().decode(AuditEntry.self, from: entryJSON)
            #expect(
                entry.sequence == seq && entry.record.action == "consent:write"
                    && entry.record.requestID == consentCall.headers[HTTPField.Name("X-Request-Id")!])
            try Merkle.verifyInclusion(
                index: UInt64(seq - 1), size: head.size, leafHash: entry.leafHash,
                proof: (proof.json["hashes"] as? [String] ?? []).map { bytes($0) }, root: head.rootHash)

            // Later heads extend this one: the consistency proof checks with the RFC verifier.
            for i in 0..<5 { try await client.call(.get, "/v1/consents/u-\(i)", key: f.keys["app"]) }
            // Within a second of the last head, no new one is signed on demand: the caller is told to retry.
            let early = try await client.call(.get, "/v1/audit/entries/\(seq + 5)/proof", key: f.keys["admin"])
            #expect(
                early.status == 503 && early.headers[.retryAfter] == "1"
                    && (early.json["error"] as? [String: Any])?["code"] as? String == "head_pending",
                "\(early.body)")
            clock.advance(2)
            let later = try await client.call(.get, "/v1/audit/entries/\(seq + 5)/proof", key: f.keys["admin"])
            let laterNote = try #require((later.json["checkpoint"] as? [String: Any])?["note"] as? String)
            let laterHead = try Checkpoint(text: SignedNote.open(laterNote, verifiers: [verifier]).text)
            let consistency = try await client.call(.get, "/v1/audit/consistency?from=\(head.size)&to=\(laterHead.size)", key: f.keys["witness"])
            #expect(consistency.status == 200, "\(consistency.body)")
            try Merkle.verifyConsistency(
                size1: head.size, size2: laterHead.size, root1: head.rootHash, root2: laterHead.rootHash,
                proof: (consistency.json["hashes"] as? [String] ?? []).map { bytes($0) })

            // The newest head for a witness; a witness may not read an entry.
            let newest = try await client.call(.get, "/v1/audit/checkpoint", key: f.keys["witness"])
            #expect(newest.status == 200 && (newest.json["size"] as? Int ?? 0) >= Int(laterHead.size))
            #expect(try await client.call(.get, "/v1/audit/entries/1/proof", key: f.keys["witness"]).status == 403)
            #expect(try await client.call(.get, "/v1/audit", key: f.keys["witness"]).status == 403)

            // Verification against a held head over HTTP.
            let verified = try await client.call(.post, "/v1/audit/verify", key: f.keys["compliance-officer"], json: ["trusted_heads": [laterNote]])
            #expect(
                verified.status == 200 && verified.json["firstBadSequence"] == nil
                    && (verified.json["trustedThrough"] as? Int) == Int(laterHead.size),
                "\(verified.body)")
            #expect((verified.json["proves"] as? String)?.hasPrefix("the first \(laterHead.size) entries") == true)
        }
    }

    @Test func badProofRequestsAreClearClientErrors() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            let officer = f.keys["compliance-officer"]
            try await client.call(.get, "/v1/consents/u-1", key: f.keys["app"])
            #expect(try await client.call(.get, "/v1/audit/entries/0/proof", key: officer).status == 400)
            #expect(try await client.call(.get, "/v1/audit/entries/abc/proof", key: officer).status == 400)
            let missing = try await client.call(.get, "/v1/audit/entries/999999/proof", key: officer)
            #expect(missing.status == 404 && (missing.json["error"] as? [String: Any])?["code"] as? String == "not_found", "\(missing.body)")
            #expect(try await client.call(.get, "/v1/audit/entries/1/proof?tree_size=x", key: officer).status == 400)
            #expect(try await client.call(.get, "/v1/audit/entries/1/proof?tree_size=123456", key: officer).status == 404)
            #expect(try await client.call(.get, "/v1/audit/consistency", key: officer).status == 400)
            #expect(try await client.call(.get, "/v1/audit/consistency?from=0", key: officer).status == 422)
            #expect(try await client.call(.post, "/v1/audit/verify", key: officer, json: ["trusted_heads": [String]()]).status == 400)
            let malformed = try await client.call(
                .post, "/v1/audit/verify", key: officer, json: ["trusted_heads": ["veil.audit/x\n1\nAAAA\n\n— veil.audit/x AAAA\n"]])
            #expect(
                malformed.status == 422 && (malformed.json["error"] as? [String: Any])?["code"] as? String == "untrusted_head", "\(malformed.body)")
            // Well formed and signed, but by another key under this log's name: the log fails, the request does not.
            let origin = HeadSigner.defaultOrigin(for: f.service.ring.auditSigner.publicKey)
            let strangerNote = try SignedNote.sign(
                text: Checkpoint(origin: origin, size: 1, rootHash: [UInt8](repeating: 9, count: 32)).text,
                name: origin, with: SigningKeyPair.generate())
            let foreign = try await client.call(.post, "/v1/audit/verify", key: officer, json: ["trusted_heads": [strangerNote]])
            #expect(
                foreign.status == 200 && (foreign.json["firstBadSequence"] as? Int) == 1
                    && (foreign.json["reason"] as? String)?.contains("not signed by \(origin)'s key") == true, "\(foreign.body)")
            let badKey = try await client.call(.post, "/v1/audit/verify", key: officer, json: ["trusted_heads": ["x"], "verifier_key": "nope"])
            #expect(badKey.status == 422 && badKey.body.contains("verifier_key"), "\(badKey.body)")
        }
    }

    /// Every /v1 route, called by every role (allowed or not, valid input or not), answers with the sequence number
    /// of its own entry, and that entry records this very request.
    @Test func everyV1AnswerCarriesItsOwnAuditEntry() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            for route in RouteTable.routes where route.path.hasPrefix("/v1/") {
                let path = route.path.replacingOccurrences(of: "{subject}", with: "u-h").replacingOccurrences(of: "{name}", with: "nobody")
                    .replacingOccurrences(of: "{seq}", with: "1")
                for role in f.keys.keys.sorted() where !(route.path == "/v1/keys/rotate" && role == "admin") {
                    // A browser key is accepted only from its page's origin (from elsewhere it is refused before it names anyone).
                    let origin = role == Role.browser ? ["Origin": GatewayFixture.shopOrigin] : [:]
                    let answer = try await client.call(route.method, path, key: f.keys[role], json: [String: String](), headers: origin)
                    let header = answer.headers[HTTPField.Name("Veil-Audit-Entry")!]
                    let seq = try #require(
                        header.flatMap { Int64($0) }, "\(role) \(route.method) \(path) → \(answer.status) without Veil-Audit-Entry")
                    let entry = try #require(try f.service.audit.query(AuditQuery(after: seq - 1, limit: 1)).first)
                    #expect(
                        entry.sequence == seq && entry.record.requestID == answer.headers[HTTPField.Name("X-Request-Id")!]
                            && entry.record.actor == "p-\(role)", "\(role) \(route.method) \(path)")
                }
            }
        }
    }
}
