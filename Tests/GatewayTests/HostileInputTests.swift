import Foundation
@testable import Gateway
@testable import VeilCore
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@Suite struct HostileInputTests {
    func expectErrorShape(
        _ r: (status: Int, json: [String: Any], headers: HTTPFields, body: String), _ status: Int, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(r.status == status, "\(r.body)", sourceLocation: sourceLocation)
        let error = r.json["error"] as? [String: Any]
        #expect(
            error?["code"] is String && error?["message"] is String && error?["request_id"] is String, "\(r.body)", sourceLocation: sourceLocation)
        #expect(!r.body.contains("Swift") && !r.body.contains(".swift"), sourceLocation: sourceLocation)
    }

    @Test func malformedAndOversizedBodiesGetTheErrorShape() async throws {
        let f = try GatewayFixture()
        let app = f.keys["app"]
        try await f.app.test(.router) { client in
            expectErrorShape(try await client.call(.post, "/v1/events", key: app, raw: Array("{\"events\": [".utf8)), 400)
            expectErrorShape(try await client.call(.post, "/v1/events", key: app, raw: [0xff, 0xfe, 0x00, 0x01]), 400)
            expectErrorShape(try await client.call(.post, "/v1/events", key: app, raw: Array(String(repeating: "[", count: 5000).utf8)), 400)
            expectErrorShape(try await client.call(.post, "/v1/events", key: app, json: ["events": "nope"]), 400)
            expectErrorShape(try await client.call(.post, "/v1/events", key: app, raw: [UInt8](repeating: 0x20, count: (1 << 20) + 10)), 413)
            expectErrorShape(try await client.call(.post, "/v1/consents", key: app, raw: Array("{\"subject\": 1e400}".utf8)), 400)
            expectErrorShape(try await client.call(.post, "/v1/consents", key: app, json: ["subject": "u"]), 400)
            expectErrorShape(try await client.call(.put, "/v1/items", key: app, json: ["items": [["id": "x"]]]), 400)
            expectErrorShape(try await client.call(.get, "/v1/nope", key: app), 404)
            expectErrorShape(try await client.call(.get, "/v1/recommendations/u?k=1000", key: f.keys["recommendation-client"]), 400)
            expectErrorShape(try await client.call(.get, "/v1/recommendations/u?k=abc", key: f.keys["recommendation-client"]), 400)
        }
    }

    /// The contract's line between 400 (the request does not match openapi.yaml's schema) and 422 (it matches, and the
    /// server refuses what it means), as schemathesis checks it with every check in `make fuzz`.
    @Test func schemaValidRequestsAreAcceptedOrRefusedWith422() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            var grant = consent("u-edge")
            grant["expires_at"] = "2099-01-01T10:00:00.125+02:00"  // RFC 3339 with fractional seconds
            let created = try await client.call(.post, "/v1/consents", key: f.keys["app"], json: grant)
            #expect(created.status == 201, "\(created.body)")
            let partial: [String: Any] = ["subject": "u-edge", "purpose": "marketing", "gpc": true, "notice_version": "2026-01"]
            #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: partial).status == 400, "purpose without granted")
            let longID = String(repeating: "é", count: 200)  // 200 characters, 400 bytes
            let items: [String: Any] = ["items": [["id": longID, "title": "t", "category": "c"]]]
            #expect(try await client.call(.put, "/v1/items", key: f.keys["app"], json: items).status == 422)
            #expect(try await client.call(.put, "/v1/items", key: f.keys["app"], json: ["items": []]).status == 400)
            let session = (0..<60).map { "s\($0)" }.joined(separator: ",")
            #expect(try await client.call(.get, "/v1/recommendations/u-edge?session=\(session)", key: f.keys["recommendation-client"]).status == 422)
            let officer = f.keys["compliance-officer"]
            #expect(try await client.call(.get, "/v1/audit?from=-92", key: officer).status == 400)
            #expect(try await client.call(.get, "/v1/audit?from=2026-12-01T00:00:00.5Z", key: officer).status == 200)
        }
    }

    @Test func aKnownPathAskedWithAnotherMethodGets405NamingTheMethods() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            let export = try await client.call(.post, "/v1/subjects/u/export", key: f.keys["compliance-officer"])
            expectErrorShape(export, 405)
            #expect(export.headers[.allow] == "GET")
            let consents = try await client.call(.delete, "/v1/consents", key: f.keys["app"])
            expectErrorShape(consents, 405)
            #expect(consents.headers[.allow] == "POST")
            #expect((consents.json["error"] as? [String: Any])?["message"] as? String == "DELETE is not served on this path; use POST")
            // A path no route has, or a template segment left empty, is still 404.
            expectErrorShape(try await client.call(.post, "/v1/subjects//export", key: f.keys["compliance-officer"]), 404)
            expectErrorShape(try await client.call(.post, "/v1/nope", key: f.keys["app"]), 404)
            // Both are audited, as unmatched requests.
            let audit = try await client.call(.get, "/v1/audit?outcome=rejected", key: f.keys["compliance-officer"])
            let reasons = (audit.json["entries"] as? [[String: Any]])?.compactMap { ($0["record"] as? [String: Any])?["reason"] as? String }
            #expect(reasons?.filter { $0.hasPrefix("status 405: client ") }.count == 2, "\(reasons ?? [])")
        }
    }

    @Test func mixedBatchKeepsValidEventsAndNamesEachRejection() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            let events: [Any] = [
                pageView("ok1", "u1", "sku-1"),
                ["id": "bad1", "kind": "teleport", "subject": "u1", "timestamp": "2026-11-20T10:00:00Z", "source": "web"],
                ["id": "bad2", "kind": "page_view", "subject": "u1", "timestamp": "2099-01-01T00:00:00Z", "source": "web", "item": "sku-1"],
                ["id": "bad3", "kind": "page_view", "subject": "u1", "timestamp": "2026-11-20T10:00:00Z", "source": "web"],
                ["id": "bad4", "kind": "page_view", "subject": "u1", "timestamp": "yesterday", "source": "web", "item": "sku-1"],
                [
                    "id": "bad5", "kind": "page_view", "subject": "u1", "timestamp": "2026-11-20T10:00:00Z", "source": "web", "item": "sku-1",
                    "scroll_depth": 3,
                ],
                "not an object",
                pageView("ok2", "u2", "sku-2", at: "2026-11-20T11:00:00+02:00"),
            ]
            let r = try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": events])
            #expect(r.status == 200)
            #expect(r.json["accepted"] as? Int == 2)
            let rejected = try #require(r.json["rejected"] as? [[String: Any]])
            #expect(rejected.map { $0["index"] as? Int } == [1, 2, 3, 4, 5, 6])
            #expect(rejected.allSatisfy { ($0["reason"] as? String)?.isEmpty == false })
            #expect((rejected[2]["reason"] as? String)?.contains("missing field 'item'") == true)
        }
    }

    @Test func repeatedDeliveriesAreAcknowledgedAndStoredOnce() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            _ = try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("u1"))
            let batch = ["events": [pageView("same", "u1", "sku-1")]]
            #expect(try await client.call(.post, "/v1/events", key: f.keys["app"], json: batch).json["accepted"] as? Int == 1)
            let again = try await client.call(.post, "/v1/events", key: f.keys["app"], json: batch)
            #expect(again.status == 200)
            #expect(again.json["duplicates"] as? Int == 1)
            // Same content under a new id within the window: also a duplicate.
            let copy = try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": [pageView("other-id", "u1", "sku-1")]])
            #expect(copy.json["duplicates"] as? Int == 1)
            #expect(try f.storedInteractions("u1") == 1)
        }
    }

    @Test func pathTricksAndHostileSubjectsGetNoData() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 4)
            let recs = f.keys["recommendation-client"]
            for uri in [
                "/v1/recommendations/..%2F..%2Fetc%2Fpasswd", "/v1/recommendations/shopper-0%2540example.com",
                "/v1/recommendations/" + String(repeating: "a", count: 300),
            ] {
                let r = try await client.call(.get, uri, key: recs)
                #expect(r.status == 200 || r.status == 422, "\(uri): \(r.status)")
                #expect(r.json["personalized"] as? Bool != true, "\(uri) leaked a personalized answer")
            }
            // Ids with control characters are refused with 422 (one definition of a subject id: SubjectID).
            expectErrorShape(try await client.call(.get, "/v1/recommendations/a%00b", key: recs), 422)
            expectErrorShape(try await client.call(.get, "/v1/recommendations/a%C2%85b", key: recs), 422)  // U+0085, a C1 control
            // Two Authorization fields (a valid key and another) are refused, not joined or picked from.
            var twice = HTTPFields()
            twice.append(HTTPField(name: .authorization, value: "Bearer \(recs ?? "")"))
            twice.append(HTTPField(name: .authorization, value: "Bearer \(f.keys["admin"] ?? "")"))
            let doubled = try await client.execute(uri: "/v1/recommendations/u", method: .get, headers: twice)
            #expect(doubled.status == .unauthorized)
            // Broken escapes and escapes that decode to invalid UTF-8: a 400 naming the encoding.
            for bad in ["a%4", "a%zz", "a%", "%C3%28", "%FF"] {
                let r = try await client.call(.get, "/v1/recommendations/\(bad)", key: recs)
                expectErrorShape(r, 400)
                #expect(r.body.contains("percent-encoded"), "\(bad): \(r.body)")
            }
            // Escapes decode to the id the app sent, in either case of hex digit.
            // (Until 4 December the "upper case" request lower-cased itself back into the line above it.)
            #expect(
                try await client.call(.get, "/v1/recommendations/shopper-0%40example.com", key: recs).json["subject"] as? String
                    == "shopper-0@example.com")
            let lower = try await client.call(.get, "/v1/recommendations/caf%c3%a9", key: recs)
            let upper = try await client.call(.get, "/v1/recommendations/caf%C3%A9", key: recs)
            #expect(lower.json["subject"] as? String == "café")
            #expect(upper.json["subject"] as? String == "café")
            #expect(upper.json["items"] as? [[String: AnyHashable]] == lower.json["items"] as? [[String: AnyHashable]])
            // Header injection through a percent-encoded CRLF in the subject: refused, and no header is added.
            let injected = try await client.call(.get, "/v1/recommendations/a%0D%0AX-Injected:%201", key: recs)
            expectErrorShape(injected, 422)
            #expect(injected.headers[HTTPField.Name("X-Injected")!] == nil)
            // A key sent with extra header-like text is simply unknown.
            expectErrorShape(try await client.call(.get, "/v1/recommendations/u", key: (recs ?? "") + "\tX-Role: admin"), 401)
            // The officer reading the audit log sees tokens, never the raw id it asked about.
            let audit = try await client.call(.get, "/v1/audit?subject=shopper-0%40example.com&limit=1000", key: f.keys["compliance-officer"])
            #expect((audit.json["entries"] as? [Any])?.isEmpty == false)
            #expect(!audit.body.contains("shopper-0"))
        }
    }

    @Test func auditReadsAreThemselvesAuditedAndPaginate() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            for _ in 0..<5 { _ = try await client.call(.get, "/v1/consents/u", key: f.keys["app"]) }
            let first = try await client.call(.get, "/v1/audit?limit=3", key: f.keys["compliance-officer"])
            let cursor = try #require(first.json["next_cursor"] as? Int)
            let second = try await client.call(.get, "/v1/audit?limit=3&cursor=\(cursor)", key: f.keys["compliance-officer"])
            let entries = try #require(second.json["entries"] as? [[String: Any]])
            #expect(entries.first?["sequence"] as? Int == cursor + 1)
            let reads = try await client.call(.get, "/v1/audit?action=audit:read", key: f.keys["compliance-officer"])
            #expect((reads.json["entries"] as? [Any])?.count == 2)
            let denied = try await client.call(.get, "/v1/audit?outcome=denied", key: f.keys["compliance-officer"])
            #expect((denied.json["entries"] as? [Any])?.isEmpty == true)
            // A mistyped outcome is refused rather than answered with "no such entries".
            let typo = try await client.call(.get, "/v1/audit?outcome=deny", key: f.keys["compliance-officer"])
            #expect(typo.status == 400)
            #expect(
                (typo.json["error"] as? [String: Any])?["message"] as? String
                    == "outcome must be one of: allowed, denied, rejected, error, linked, no-match, unlinked, no-link, promoted, rolled-back")
            _ = try await client.call(.get, "/v1/consents/u", key: nil)
            let nowDenied = try await client.call(.get, "/v1/audit?outcome=denied", key: f.keys["compliance-officer"])
            #expect((nowDenied.json["entries"] as? [[String: Any]])?.map { ($0["record"] as? [String: Any])?["outcome"] as? String } == ["denied"])
        }
    }
}

@Suite struct RateLimitTests {
    @Test func aPrincipalOverItsRolesBudgetGets429WithRetryAfterAndOthersAreUnaffected() async throws {
        let clock = TestClock(Date(timeIntervalSince1970: 1_800_000_000))
        var limits = RateLimiter.defaults
        limits["app"] = RateLimit(perSecond: 2, burst: 3)
        let f = try GatewayFixture(rateLimits: limits, now: { clock.now() })
        try await f.app.test(.router) { client in
            for _ in 0..<3 { #expect(try await client.call(.get, "/v1/consents/u", key: f.keys["app"]).status == 200) }
            let limited = try await client.call(.get, "/v1/consents/u", key: f.keys["app"])
            #expect(limited.status == 429)
            #expect((limited.json["error"] as? [String: Any])?["code"] as? String == "rate_limited")
            #expect(limited.headers[.retryAfter] == "1")
            // Another principal is not affected; the bucket refills with time.
            #expect(try await client.call(.get, "/v1/consents/u", key: f.otherNamespaceAppKey).status == 200)
            clock.advance(0.5)
            #expect(try await client.call(.get, "/v1/consents/u", key: f.keys["app"]).status == 200)
            let audit = try await client.call(.get, "/v1/audit?outcome=rejected", key: f.keys["compliance-officer"])
            #expect(
                (audit.json["entries"] as? [[String: Any]])?.contains {
                    ($0["record"] as? [String: Any])?["reason"] as? String == "status 429: rate limit of role app"
                } == true)
        }
    }

    @Test func tokenBucketRefillsAtItsRateUpToItsBurst() {
        let limit = RateLimit(perSecond: 10, burst: 2)
        var bucket = TokenBucket(tokens: 2, updated: 0)
        #expect(bucket.take(limit, now: 0) == nil)
        #expect(bucket.take(limit, now: 0) == nil)
        #expect(abs((bucket.take(limit, now: 0) ?? 0) - 0.1) < 1e-9)
        #expect(bucket.take(limit, now: 0.1) == nil)
        #expect(bucket.take(limit, now: 100) == nil)
        #expect(bucket.tokens == 1)
    }
}
