import Foundation
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
            return ["subject": c, "purpose": c + String(repeating: "x", count: 200_000), "granted": true, "method": c, "notice_version": c,
                    "jurisdiction": c, "gpc": true, c: c]
        case "/v1/events", "/v1/feedback":
            return ["events": [["id": c, "kind": "page_view", "subject": c, "timestamp": "2026-11-20T10:00:00Z", "source": c, "item": c,
                                "dwell_ms": 1000, "referrer": "https://\(c)/", "email": c, c: c],
                               ["id": c + "2", "kind": "search", "subject": c, "timestamp": "2026-11-20T10:00:00Z", "source": "web", "query": c,
                                "signal": c, "item": c]], c: c]
        case "/v1/items":
            return ["items": [["id": "sku-c", "title": "t", "category": c, "attributes": [c: c], "tags": [c]]], c: c]
        default:
            return path.hasPrefix("/v1/") && !path.contains("{") ? [c: c] : nil
        }
    }

    @Test func noClientTextReachesTheAuditLogTheLogOrTheMetrics() async throws {
        let canary = Self.canary
        let capture = LogCapture()
        let f = try GatewayFixture(logger: capture.logger)
        let encoded = canary.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let query = ["k", "categories", "exclude", "session", "recipient", "actor", "action", "outcome", "from", "to", "cursor", "limit",
                     "subject", "subject_token", "format", encoded].map { "\($0)=\(encoded)" }.joined(separator: "&")
        let headers = ["User-Agent": canary, "X-Request-Id": canary, "X-Forwarded-For": canary, "Referer": "https://\(canary)/", "Sec-GPC": "1"]
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 3)
            for route in RouteTable.routes where route.path.hasPrefix("/v1/") && route.path != "/v1/keys/rotate" {
                let path = route.path.replacingOccurrences(of: "{subject}", with: encoded) + "?" + query
                let json = Self.body(for: route.path)
                for key in [f.keys["admin"], f.keys["recommendation-client"], nil, canary] {
                    let r = try await client.call(route.method, path, key: key, json: json, headers: headers)
                    #expect(r.status < 500, "\(route.method) \(route.path): \(r.status) \(r.body.prefix(200))")
                }
            }
            let metrics = try await client.call(.get, "/metrics", key: nil).body
            #expect(!metrics.contains(canary) && !metrics.contains(encoded), "/metrics holds the canary")
        }
        // The audit log's files, byte for byte, and every entry as exported.
        var auditBytes = Data()
        for suffix in ["", "-wal"] {
            auditBytes.append((try? Data(contentsOf: URL(fileURLWithPath: f.service.paths.auditDatabase + suffix))) ?? Data())
        }
        #expect(auditBytes.count > 10_000)
        for needle in [canary, "canary.7f3a", "7f3a"] {
            #expect(auditBytes.range(of: Data(needle.utf8)) == nil, "the audit files hold '\(needle)'")
        }
        // The 200 KB purpose did not grow the log by its size.
        #expect(auditBytes.count < 4 << 20, "the audit files are \(auditBytes.count) bytes")
        let logged = capture.messages.withLock { $0.map { "\($0.1) \($0.2)" }.joined(separator: "\n") }
        #expect(!logged.contains("7f3a"), "the log holds the canary")
    }
}
