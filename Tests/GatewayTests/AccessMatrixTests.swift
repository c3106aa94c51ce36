import Audit
import Foundation
import VeilCore
import Gateway
import Hummingbird
import HummingbirdTesting
import Policy
import Testing
import Yams

/// One hand-written expectation from Policies/tests/*.json: may `role` perform `action` (sent as `method` `path`)?
struct AccessVector: Decodable, Sendable, CustomStringConvertible {
    enum Decision: String, Decodable, Sendable { case allow, deny }
    let role: String
    /// nil for the public probes.
    let action: String?
    /// nil (with `path`) for a vector checked against the policy only.
    let method: String?
    /// A concrete path, e.g. /v1/consents/u-1.
    let path: String?
    let expect: Decision
    /// Why, in words: the line of roles.yaml, or the missing one, that decides it.
    let rule: String
    /// Where roles.yaml or the route table disagrees with the product's intent; the vector holds current behaviour.
    let finding: String?

    var description: String {
        let target = method.flatMap { method in path.map { method + " " + $0 } } ?? action ?? "-"
        return "\(role) \(target): expect \(expect.rawValue) (\(rule))"
    }
}

/// Every vector of every Policies/tests/*.json, in file order.
func accessVectors() throws -> [AccessVector] {
    struct VectorFile: Decodable { let vectors: [AccessVector] }
    let directory = repositoryRoot.appendingPathComponent("Policies").appendingPathComponent("tests")
    let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".json") }.sorted()
    var vectors: [AccessVector] = []
    for name in names {
        let data = try Data(contentsOf: directory.appendingPathComponent(name))
        vectors.append(contentsOf: try JSONDecoder().decode(VectorFile.self, from: data).vectors)
    }
    return vectors
}

/// The routes of ``RouteTable`` that `method` `path` reaches (`{name}` segments match any non-empty segment).
func routesReached(by method: String, _ path: String) -> [RouteSpec] {
    let withoutQuery = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
    let segments = withoutQuery.split(separator: "/", omittingEmptySubsequences: false)
    return RouteTable.routes.filter { route in
        guard route.method.rawValue == method else { return false }
        let template = route.path.split(separator: "/", omittingEmptySubsequences: false)
        guard template.count == segments.count else { return false }
        return zip(template, segments).allSatisfy { pair in pair.0.hasPrefix("{") ? !pair.1.isEmpty : pair.0 == pair.1 }
    }
}

/// Issue #21: the expected decisions are written by hand in Policies/tests/*.json, never computed with `policy.allows`,
/// and checked against both Policies/roles.yaml and the live router.
@Suite struct AccessMatrixTests {
    @Test func handWrittenVectorsAgreeWithRolesYAML() throws {
        let policy = try PolicyParser.load(directory: repositoryRoot.appendingPathComponent("Policies").path)
        let vectors = try accessVectors()
        #expect(!vectors.isEmpty, "no vectors in Policies/tests/*.json")
        for vector in vectors {
            #expect(!vector.rule.isEmpty, "\(vector) names no rule")
            guard let name = vector.action else { continue }  // a public probe: checked against the router only
            guard let action = Action(rawValue: name) else {
                #expect(vector.expect == .deny, "\(vector): '\(name)' is no action, so no role may perform it")
                continue
            }
            #expect(policy.allows(role: vector.role, action) == (vector.expect == .allow), "Policies/roles.yaml disagrees with \(vector)")
        }
    }

    @Test func handWrittenVectorsAgreeWithTheLiveRouter() async throws {
        // The witness's own limit (1 a second) would answer its 24 vectors 429; what is tested here is the role.
        var limits = RateLimiter.defaults
        limits["witness"] = RateLimit(perSecond: 1000, burst: 1000)
        let f = try GatewayFixture(rateLimits: limits)
        let vectors = try accessVectors()
        let known = Set(f.service.policy.roles.keys)
        var keys = f.keys
        for role in Set(vectors.map(\.role)).subtracting(known).sorted() {
            // A principal whose role roles.yaml does not define (as after a role is removed): it authenticates, then may do nothing.
            keys[role] = try f.service.principals.add(name: "p-\(role)", role: role, knownRoles: known.union([role]))
        }
        let roleKeys = keys
        try await f.app.test(.router) { client in
            for vector in vectors {
                guard let method = vector.method, let path = vector.path else { continue }
                let reached = routesReached(by: method, path)
                let route = try #require(
                    reached.count == 1 ? reached.first : nil, "\(vector): reaches \(reached.count) routes of RouteTable, not one")
                #expect(
                    route.action?.rawValue == vector.action,
                    "\(vector): RouteTable authorizes \(route.method.rawValue) \(route.path) with \(route.action?.rawValue ?? "nothing (public)")")
                let key = try #require(roleKeys[vector.role], "no key for role \(vector.role)")
                let before = f.auditCount
                let origin = vector.role == Role.browser ? ["Origin": GatewayFixture.shopOrigin] : [:]
                let r = try await client.call(route.method, path, key: key, json: ["events": []], headers: origin)
                switch vector.expect {
                case .deny:
                    #expect(r.status == 403, "\(vector): answered \(r.status) \(r.body)")
                    let error = r.json["error"] as? [String: Any]
                    #expect(error?["code"] as? String == "forbidden" && error?["request_id"] != nil, "\(vector): error shape \(r.body)")
                case .allow:
                    #expect(r.status != 401 && r.status != 403, "\(vector): refused with \(r.status) \(r.body)")
                }
                // Exactly one audit entry per /v1 request, allowed or refused; none for a public probe. (A retrain also
                // records each subject it unlearned, an erasure by an earlier vector among them.)
                let audited = RouteTable.publicPaths.contains(route.path) ? 0 : 1
                let added = try f.service.audit.query(AuditQuery(after: before, limit: 1000))
                #expect(
                    added.filter { $0.record.action != "model:unlearn" }.count == audited, "\(vector): audit entries \(added.map(\.record.action))")
                #expect(route.path == "/v1/model/train" || added.allSatisfy { $0.record.action != "model:unlearn" })
            }
        }
    }

    /// A new route, role or action without hand-written vectors fails here.
    @Test func vectorsCoverEveryRouteAndActionForEveryRole() throws {
        let policy = try PolicyParser.load(directory: repositoryRoot.appendingPathComponent("Policies").path)
        let vectors = try accessVectors()
        var seen = Set<String>()
        for vector in vectors {
            let id = "\(vector.role) \(vector.method ?? "-") \(vector.path ?? vector.action ?? "-")"
            #expect(seen.insert(id).inserted, "two vectors for \(id)")
        }
        for role in policy.roles.keys.sorted() {
            for route in RouteTable.routes {
                let covered = vectors.contains { vector in
                    guard vector.role == role, let method = vector.method, let path = vector.path else { return false }
                    return routesReached(by: method, path).contains { $0.method.rawValue == route.method.rawValue && $0.path == route.path }
                }
                #expect(covered, "no vector in Policies/tests/ for role \(role) on \(route.method.rawValue) \(route.path)")
            }
            for action in Action.allCases {
                #expect(
                    vectors.contains { $0.role == role && $0.action == action.rawValue },
                    "no vector in Policies/tests/ for role \(role) with \(action.rawValue)")
            }
        }
        #expect(vectors.contains { policy.roles[$0.role] == nil }, "no vector for a role roles.yaml does not define")
        #expect(
            vectors.contains { vector in vector.action.map { Action(rawValue: $0) == nil } ?? false }, "no vector for an action that does not exist")
    }

    /// Every /v1 route refuses a missing, unknown, revoked or malformed key with 401, in the error shape, audited.
    @Test func everyRouteRefusesMissingUnknownRevokedAndMalformedKeys() async throws {
        // Every refusal here gets an entry of its own (a flood's aggregation is RefusalFloodTests' subject).
        var limits = RefusalLimits()
        limits.individuallyAudited = 1_000
        let f = try GatewayFixture(refusalLimits: limits)
        try await f.app.test(.router) { client in
            for route in RouteTable.routes {
                guard route.action != nil else {
                    #expect(RouteTable.publicPaths.contains(route.path), "\(route.path) has no action and is not a declared public probe")
                    continue
                }
                let uri = route.path.replacingOccurrences(of: "{subject}", with: "u-1")
                let callers: [(String, String?)] = [
                    ("no key", nil), ("unknown key", "vk_" + String(repeating: "0", count: 64)),
                    ("revoked key", f.revokedKey), ("garbage", "not-a-key"),
                ]
                for (who, key) in callers {
                    let before = f.auditCount
                    let r = try await client.call(route.method, uri, key: key, json: ["events": []])
                    #expect(r.status == 401, "\(route.method) \(route.path) as \(who): \(r.status)")
                    let error = r.json["error"] as? [String: Any]
                    #expect(error?["code"] != nil && error?["request_id"] != nil, "error shape for \(who) on \(route.path)")
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

    /// Every `/v1` operation can meet a database that does not answer or a full disk (503 in the error shape, with
    /// Retry-After), and every one a body can be sent to can meet the 1 MiB cap (413): the contract says so, so that
    /// clients and fuzzers expect both.
    @Test func everyOperationDocumentsUnavailabilityAndEveryBodyTheSizeCap() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            let r = try await client.call(.get, "/openapi.yaml", key: nil)
            let doc = try #require(try Yams.load(yaml: r.body) as? [String: Any])
            let paths = try #require(doc["paths"] as? [String: [String: Any]])
            let components = try #require((doc["components"] as? [String: Any])?["responses"] as? [String: Any])
            #expect(components["Unavailable"] != nil && components["TooLarge"] != nil)
            for route in RouteTable.routes where route.path.hasPrefix("/v1") {
                let name = "\(route.method.rawValue) \(route.path)"
                let operation = try #require(paths[route.path]?[route.method.rawValue.lowercased()] as? [String: Any], "\(name)")
                let responses = try #require(operation["responses"] as? [String: Any], "\(name)")
                #expect((responses["503"] as? [String: Any])?["$ref"] as? String == "#/components/responses/Unavailable", "\(name)")
                if [.post, .put, .patch].contains(route.method) {
                    #expect((responses["413"] as? [String: Any])?["$ref"] as? String == "#/components/responses/TooLarge", "\(name)")
                }
            }
        }
    }
}
