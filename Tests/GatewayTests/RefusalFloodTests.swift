import Audit
import Foundation
import VeilCore
import HTTPTypes
import Gateway
import Hummingbird
import Policy
import HummingbirdTesting
import Testing

/// Issue #21, item 11: 400 requests without a key used to leave 400 durable audit entries. A flood from one
/// client now leaves a bounded record that a compliance officer still sees: the first refusals of each window as
/// entries of their own, the rest in one aggregate entry with the count, and past the limit a 429.
@Suite struct RefusalFloodTests {
    @Test func aFloodWithoutKeysLeavesABoundedRecordWithItsCount() async throws {
        var limits = RefusalLimits()
        limits.individuallyAudited = 5
        limits.answered = 300
        limits.window = 60
        let clock = TestClock(Date(timeIntervalSince1970: 1_795_400_080))  // 40 s into a window
        let f = try GatewayFixture(refusalLimits: limits, now: clock.now)
        try await f.app.test(.router) { client in
            let before = f.auditCount
            var statuses: [Int: Int] = [:]
            var named: [Int64] = []
            for n in 0..<400 {
                let r = try await client.call(.get, "/v1/recommendations/u-\(n)", key: n % 2 == 0 ? nil : "not-a-key")
                statuses[r.status, default: 0] += 1
                if r.status == 429 { #expect(Int(r.headers[.retryAfter] ?? "") == 20) }
                // Every answer names an entry: its own for the first five, then the one the window's counted refusals share.
                named.append(try #require(r.headers[HTTPField.Name("Veil-Audit-Entry")!].flatMap { Int64($0) }, "answer \(n) names no entry"))
            }
            #expect(statuses == [401: 300, 429: 100])
            #expect(f.auditCount == before + 5 + 1, "the first refusals of the window are entries of their own, the rest share one")
            #expect(Set(named.prefix(5)).count == 5 && Set(named.dropFirst(5)) == [before + 6])
            let shared = try #require(try f.service.audit.query(AuditQuery(after: before + 5, limit: 1)).first)
            #expect(shared.record.action == "auth:refused" && shared.record.reason.contains("are counted, not recorded one by one"))
            // A valid key from the same client still works.
            #expect(try await client.call(.get, "/v1/consents/u-1", key: f.keys["app"]).status == 200)
            clock.advance(30)
            try await f.service.flushRefusals()
            #expect(f.auditCount == before + 5 + 1 + 1 + 1)
            let entries = try await client.call(.get, "/v1/audit?action=auth:refused", key: f.keys["compliance-officer"])
            let reasons = (entries.json["entries"] as? [[String: Any]] ?? []).compactMap { ($0["record"] as? [String: Any])?["reason"] as? String }
            #expect(reasons.count == 2)
            #expect(reasons.last?.hasPrefix("400 requests refused without authentication or to a browser key in the 60 s") == true, "\(reasons)")
            #expect(reasons.last?.contains(": 5 have entries of their own") == true, "\(reasons)")
            #expect(reasons.last?.contains("100 were answered 429; the others named entry \(before + 6)") == true, "\(reasons)")
        }
    }
}

/// The same bound for everything answered without a principal: unknown paths (404) and wrong methods (405) were
/// audited one durable entry each, with no limit, so a keyless flood of them could fill the audit disk.
@Suite struct UnauthenticatedFloodTests {
    @Test func keylessRequestsToUnknownPathsAndWrongMethodsAreBoundedToo() async throws {
        var limits = RefusalLimits()
        limits.individuallyAudited = 3
        let clock = TestClock(Date(timeIntervalSince1970: 1_795_400_010))  // a fixed minute: no window boundary mid-test
        let f = try GatewayFixture(refusalLimits: limits, now: clock.now)
        try await f.app.test(.router) { client in
            let before = f.auditCount
            for n in 0..<60 {
                let r = n % 2 == 0 ? try await client.call(.get, "/nowhere-\(n)", key: nil) : try await client.call(.put, "/v1/events", key: nil)
                #expect(r.status == 404 || r.status == 405)
            }
            #expect(f.auditCount == before + 3 + 1)
            // An authenticated request that is refused (403) is audited one by one: the principal is accountable.
            for _ in 0..<5 { #expect(try await client.call(.get, "/v1/audit/verify", key: f.keys["app"]).status == 403) }
            #expect(f.auditCount == before + 3 + 1 + 5)
        }
    }
}

/// Issue #21, item 15: a revocation through the API is in force before it returns (the server used to keep
/// authenticated keys for a second after `veil principals revoke`).
@Suite struct RevocationTests {
    @Test func aRevokedKeyIsRefusedOnTheVeryNextRequest() async throws {
        let f = try GatewayFixture()
        let roles = Set(f.service.policy.roles.keys)
        let key = try f.service.principals.add(name: "leaving-app", role: "app", knownRoles: roles)
        try await f.app.test(.router) { client in
            // Authenticated once, so the key sits in the server's cache.
            #expect(try await client.call(.get, "/v1/consents/u-1", key: key).status == 200)
            let revoked = try await client.call(.delete, "/v1/principals/leaving-app", key: f.keys["admin"])
            #expect(revoked.status == 200, "\(revoked.body)")
            #expect(try await client.call(.get, "/v1/consents/u-1", key: key).status == 401)
            // Again: 404 in the error shape; and only an admin may revoke.
            #expect(try await client.call(.delete, "/v1/principals/leaving-app", key: f.keys["admin"]).status == 404)
            #expect(try await client.call(.delete, "/v1/principals/p-admin", key: f.keys["app"]).status == 403)
            let audit = try await client.call(.get, "/v1/audit?action=principals:write", key: f.keys["compliance-officer"])
            #expect((audit.json["entries"] as? [Any])?.count == 3)
        }
    }
}
