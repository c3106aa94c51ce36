import Foundation
import Gateway
import Hummingbird
import HummingbirdTesting
import Policy
import Testing
import Yams

@Suite struct AccessMatrixTests {
    /// Every route × every role, no key, an unknown key and a revoked key, against Policies/roles.yaml.
    @Test func everyRouteWithEveryRoleMatchesThePolicy() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            for route in RouteTable.routes {
                let uri = route.path.replacingOccurrences(of: "{subject}", with: "u-1")
                guard let action = route.action else {
                    #expect(RouteTable.publicPaths.contains(route.path), "\(route.path) has no action and is not a declared public probe")
                    continue
                }
                var callers: [(String, String?, Int?)] = [("no key", nil, 401), ("unknown key", "vk_" + String(repeating: "0", count: 64), 401),
                                                          ("revoked key", f.revokedKey, 401), ("garbage", "not-a-key", 401)]
                for role in f.service.policy.roles.keys.sorted() {
                    callers.append((role, f.keys[role], f.service.policy.allows(role: role, action) ? nil : 403))
                }
                for (who, key, expected) in callers {
                    let before = f.auditCount
                    let r = try await client.call(route.method, uri, key: key, json: ["events": []])
                    if let expected {
                        #expect(r.status == expected, "\(route.method) \(route.path) as \(who): \(r.status)")
                        let error = r.json["error"] as? [String: Any]
                        #expect(error?["code"] != nil && error?["request_id"] != nil, "error shape for \(who) on \(route.path)")
                    } else {
                        #expect(r.status != 401 && r.status != 403, "\(route.method) \(route.path) as \(who) was refused: \(r.body)")
                    }
                    // Exactly one audit entry per request, allowed or refused.
                    #expect(f.auditCount == before + 1, "\(route.method) \(route.path) as \(who)")
                }
            }
        }
    }

    @Test func everyPolicyActionIsReachableAndRolesOnlyNameKnownActions() throws {
        let f = try GatewayFixture()
        let routed = Set(RouteTable.routes.compactMap(\.action))
        for action in Action.allCases {
            #expect(routed.contains(action), "no route needs \(action.rawValue)")
        }
        #expect(f.service.policy.roles["recommendation-client"]!.actions == [.recommendationsRead])
    }

    @Test func openAPIDocumentListsExactlyTheRoutesTheRouterServes() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            let r = try await client.call(.get, "/openapi.yaml", key: nil)
            #expect(r.status == 200)
            let doc = try #require(try Yams.load(yaml: r.body) as? [String: Any])
            #expect(doc["openapi"] as? String == "3.1.0")
            let paths = try #require(doc["paths"] as? [String: Any])
            var documented = Set<String>()
            for (path, value) in paths {
                for method in (value as? [String: Any] ?? [:]).keys where ["get", "post", "put", "delete", "patch"].contains(method) {
                    documented.insert("\(method.uppercased()) \(path)")
                }
            }
            let served = Set(RouteTable.routes.map { "\($0.method.rawValue) \($0.path)" })
            #expect(documented == served, "undocumented: \(served.subtracting(documented)); not served: \(documented.subtracting(served))")
        }
    }
}
