import Foundation
import VeilCore
import Gateway
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Synchronization
import Testing

/// Issue #21, item 10: the audit log can never be erased, so nothing a client sends may land in it verbatim. An
/// e-mail canary goes into every field of every route (path, every query parameter, every body field, headers, a
/// 200 KB purpose), with a valid key, a key of another role and none; then the audit files, the server's log and
/// /metrics are searched for it as an attacker would: byte for byte.
@Suite struct AuditCanaryTests {
    static let canary = "canary.7f3a@example.org"

    static func body(for path: String) -> Any? {
        let c = canary
        switch path {
        case "/v1/consents":
            return [
                "subject": c, "purpose": c + String(repeating: "x", count: 200_000), "granted": true, "method": c, "notice_version": c,
                "jurisdiction": c, "gpc": true, c: c,
            ]
        case "/v1/events", "/v1/feedback":
            return [
                "events": [
                    [
                        "id": c, "kind": "page_view", "subject": c, "timestamp": "2026-11-20T10:00:00Z", "source": c, "item": c,
                        "dwell_ms": 1000, "referrer": "https://\(c)/", "email": c, c: c,
                    ],
                    [
                        "id": c + "2", "kind": "search", "subject": c, "timestamp": "2026-11-20T10:00:00Z", "source": "web", "query": c,
                        "signal": c, "item": c,
                    ],
                ], c: c,
            ]
        case "/v1/audit/verify":
            return ["trusted_heads": [c, "\(c)\n1\nAAAA\n\n\u{2014} \(c) AAAA\n"], "verifier_key": c]
        case "/v1/items":
            return ["items": [["id": "sku-c", "title": "t", "category": c, "attributes": [c: c], "tags": [c]]], c: c]
        default:
            return path.hasPrefix("/v1/") && !path.contains("{") ? [c: c] : nil
        }
    }

    @Test func noClientTextReachesTheAuditLogTheLogOrTheMetrics() async throws {
        let canary = Self.canary
        let capture = LogCapture()
        // A clock moved by hand, so the refusal window can be closed and its aggregate entry written (and searched).
        let clock = TestClock(Date(timeIntervalSince1970: 1_795_400_000))
        let f = try GatewayFixture(logger: capture.logger, now: clock.now)
        let encoded = canary.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let query = [
            "k", "categories", "exclude", "session", "recipient", "actor", "action", "outcome", "from", "to", "cursor", "limit",
            "subject", "subject_token", "format", "tree_size", encoded,
        ].map { "\($0)=\(encoded)" }.joined(separator: "&")
        let headers = ["User-Agent": canary, "X-Request-Id": canary, "X-Forwarded-For": canary, "Referer": "https://\(canary)/", "Sec-GPC": "1"]
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 3)
            for route in RouteTable.routes where route.path.hasPrefix("/v1/") && route.path != "/v1/keys/rotate" {
                let path =
                    route.path.replacingOccurrences(of: "{subject}", with: encoded).replacingOccurrences(of: "{name}", with: encoded)
                    .replacingOccurrences(of: "{seq}", with: encoded) + "?" + query
                #expect(!path.contains("{"), "\(route.path) has a parameter the canary does not fill")
                let json = Self.body(for: route.path)
                for key in [f.keys["admin"], f.keys["recommendation-client"], nil, canary] {
                    let r = try await client.call(route.method, path, key: key, json: json, headers: headers)
                    #expect(r.status < 500, "\(route.method) \(route.path): \(r.status) \(r.body.prefix(200))")
                }
            }
            let metrics = try await client.call(.get, "/metrics", key: nil).body
            #expect(!metrics.contains(canary) && !metrics.contains(encoded), "/metrics holds the canary")
            // Refusals beyond the first few of a window go into one aggregate entry, written once the window ended.
            clock.advance(120)
            try await f.service.flushRefusals()
            let refused = try await client.call(.get, "/v1/audit?action=auth:refused", key: f.keys["compliance-officer"])
            let aggregates = (refused.json["entries"] as? [[String: Any]] ?? []).filter {
                ($0["record"] as? [String: Any])?["action"] as? String == "auth:refused"
            }
            #expect(!aggregates.isEmpty, "no auth:refused aggregate entry was written: \(refused.status) \(refused.body.prefix(300))")
        }
        // The audit log's files, byte for byte, and every entry as exported.
        var auditBytes = Data()
        for suffix in ["", "-wal"] {
            auditBytes.append((try? Data(contentsOf: URL(fileURLWithPath: f.service.paths.auditDatabase + suffix))) ?? Data())
        }
        #expect(auditBytes.count > 10_000)
        // Only needles with characters outside hex: the files are full of random hex, where "7f3a" turns up by chance.
        let needles = [canary, "canary.7f3a", encoded]
        for needle in needles {
            #expect(auditBytes.range(of: Data(needle.utf8)) == nil, "the audit files hold '\(needle)'")
        }
        // The 200 KB purpose did not grow the log by its size.
        #expect(auditBytes.count < 4 << 20, "the audit files are \(auditBytes.count) bytes")
        let logged = capture.messages.withLock { $0.map { "\($0.1) \($0.2)" }.joined(separator: "\n") }
        for needle in needles {
            #expect(!logged.contains(needle), "the log holds '\(needle)'")
        }
    }
}

/// Issue #23: every audited response names its own entry, so a client can later fetch that entry (and its proof).
@Suite struct AuditEntryHeaderTests {
    @Test func everyV1ResponseNamesItsOwnDurableEntry() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 2)
            var seen = Set<Int>()
            for (method, uri, key) in [
                (HTTPRequest.Method.get, "/v1/recommendations/shopper-0%40example.com", f.keys["recommendation-client"]),
                (.get, "/v1/consents/shopper-0%40example.com", f.keys["app"]),
                (.get, "/v1/audit/verify", f.keys["recommendation-client"]),  // 403
                (.get, "/v1/consents/x", nil),  // 401, individually audited
                (.get, "/v1/nowhere", f.keys["app"]),
            ] {  // 404
                let r = try await client.call(method, uri, key: key)
                let sequence = try #require(Int(r.headers[HTTPField.Name("Veil-Audit-Entry")!] ?? ""), "\(uri): \(r.status) has no entry header")
                #expect(seen.insert(sequence).inserted)
                #expect(Int64(sequence) <= f.auditCount, "the entry is in the log when the response arrives")
                let entry = try await client.call(.get, "/v1/audit?cursor=\(sequence - 1)&limit=1", key: f.keys["compliance-officer"])
                let record = (entry.json["entries"] as? [[String: Any]])?.first?["record"] as? [String: Any]
                #expect(
                    record?["requestID"] as? String == r.headers[HTTPField.Name("X-Request-Id")!], "\(uri): entry \(sequence) is another request's")
            }
            // Public probes are not audited and carry no entry.
            #expect(try await client.call(.get, "/health/live", key: nil).headers[HTTPField.Name("Veil-Audit-Entry")!] == nil)
        }
    }
}
