import ArgumentParser
import Audit
import Foundation
import VeilCore
#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
import Gateway
import Ingestion
import Logging
import Persistence
import Policy
import PostgresStorage
import ServiceLifecycle
import UnixSignals
import Vault

/// The end-to-end demo: everything through the real HTTP API of a server started in process.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "demo", abstract: "Run Veil end to end on a generated shop, through its HTTP API.")

    @Option(help: "Working directory (default: a new temporary one).") var dir: String?
    @Option var users = 300
    @Option var items = 400
    @Option var days = 60
    @Option var seed: UInt64 = 7
    @Option(help: .hidden) var apiKeysOut: String?
    @Flag(help: "Leave the server running after the story, to open the compliance console on the demo's data (Ctrl-C stops it).")
    var serve = false
    @Option(help: "With --serve: the port (default: a free one).") var port = 0
    @Option(
        name: .customLong("database-url"),
        help: "Run the story on PostgreSQL (an empty database: postgres://user@host/db) instead of a SQLite file in --dir.")
    var databaseURL: String?

    func run() async throws {
        let started = Date()
        let root = dir ?? (NSTemporaryDirectory() + "veil-demo-\(UUID().uuidString.prefix(8))")
        let policies = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Policies").path
        let policyDir = FileManager.default.fileExists(atPath: "./Policies/purposes.yaml") ? "./Policies" : policies
        let paths = RuntimePaths(dataDirectory: root + "/data", keysDirectory: root + "/Keys", policiesDirectory: policyDir)
        step("1. keys and principals in \(root)")
        try KeyRing.initialize(directory: paths.keysDirectory)
        var logger = Logger(label: "veil")
        logger.logLevel = .warning
        let store: any OperationalStore =
            try databaseURL.map { try PostgresStore(settings: PostgresSettings(url: $0)) } ?? Backend.open(paths)
        let service = try VeilService(paths: paths, store: store, passphrase: nil, logger: logger)
        let roles = Set(service.policy.roles.keys)
        let appKey = try service.principals.add(name: "shop-app", role: "app", knownRoles: roles)
        let recsKey = try service.principals.add(name: "shop-recs", role: "recommendation-client", knownRoles: roles)
        let officerKey = try service.principals.add(name: "dpo", role: "compliance-officer", knownRoles: roles)
        let adminKey = try service.principals.add(name: "ops", role: Role.admin, knownRoles: roles)
        let browserKey = try service.principals.add(name: "shop-web", role: Role.browser, origins: [Self.shopOrigin], knownRoles: roles)
        print("   principals: shop-app (app), shop-recs (recommendation-client), dpo (compliance-officer), ops (admin),")
        print("   shop-web (browser: the key in the shop's pages, for \(Self.shopOrigin) only)")
        if let apiKeysOut {
            // For the secrets scan only: it needs the keys it must not find anywhere else.
            try [appKey, recsKey, officerKey, adminKey, browserKey].joined(separator: "\n").write(
                toFile: apiKeysOut, atomically: true, encoding: .utf8)
        }

        var config = ServerConfiguration()
        config.port = serve ? port : 0
        config.retrainInterval = 0
        config.retentionInterval = 0
        let (portStream, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let app = try GatewayServer.application(service: service, configuration: config) { port in portContinuation.yield(port) }
        var groupConfiguration = ServiceGroupConfiguration(services: [app], logger: logger)
        if serve { groupConfiguration.gracefulShutdownSignals = [.sigterm, .sigint] }
        let group = ServiceGroup(configuration: groupConfiguration)
        async let running: Void = group.run()
        var iterator = portStream.makeAsyncIterator()
        guard let port = await iterator.next() else { throw ValidationError("server did not start") }
        let api = Client(base: "http://127.0.0.1:\(port)")
        print("   server listening on 127.0.0.1:\(port)")
        let held: String
        do {
            held = try await script(api: api, keys: (appKey, recsKey, officerKey, adminKey, browserKey))
        } catch {
            await group.triggerGracefulShutdown()
            try? await running
            throw error
        }
        if serve {
            step("the server keeps running: the compliance console is at http://127.0.0.1:\(port)/console")
            print("   sign in with the compliance officer's key (a throwaway demo key): \(officerKey)")
            print("   or the administrator's: \(adminKey); Ctrl-C stops the server")
        } else {
            // A graceful stop lets the server sign its final audit checkpoint.
            await group.triggerGracefulShutdown()
        }
        try await running
        let verify = try AuditReader(path: paths.auditDatabase).verify(
            publicKey: service.ring.auditSigner.publicKey, trustedHeads: held.isEmpty ? [] : [held])
        print(
            "   after shutdown: \(verify.entries) audit entries, \(verify.checkpoints) signed heads, intact: \(verify.intact); against the officer's held head, this proves \(verify.proves)"
        )
        step("done in \(String(format: "%.1f", Date().timeIntervalSince(started))) s; state kept in \(root)")
    }

    /// The demo's requests; returns the signed head the compliance officer kept. Long on purpose: it is the story the
    /// README tells, step by numbered step, and reads best top to bottom in one place.
    func script(api: Client, keys: (app: String, recs: String, officer: String, admin: String, browser: String)) async throws -> String {
        step("2. sample shop: \(users) users, \(items) items, \(days) days (seed \(seed))")
        let shop = SampleShop(users: users, items: items, days: days, seed: seed)
        let encoder = JSONEncoder()
        // In parts well under the 1 MiB body limit: a big catalog does not fit one request.
        for start in stride(from: 0, to: shop.items.count, by: 2000) {
            let part = Array(shop.items[start..<min(start + 2000, shop.items.count)])
            _ = try await api.send("PUT", "/v1/items", key: keys.app, body: try encoder.encode(["items": part]), expect: 200)
        }
        print("   catalog: \(shop.items.count) items stored in clear (not personal)")

        step("3. consents: most opt in, some opt out, one sends Global Privacy Control")
        var optedIn = 0
        for (n, user) in shop.users.enumerated() {
            let granted = n % 8 != 7
            if granted { optedIn += 1 }
            let body: [String: Any] = [
                "subject": user.id, "purpose": "personalization", "granted": granted, "method": "banner",
                "notice_version": "2026-01", "jurisdiction": user.location.hasPrefix("US") ? "us_ca" : "EU",
            ]
            _ = try await api.send("POST", "/v1/consents", key: keys.app, json: body, expect: 201)
        }
        let gpcUser = shop.users[1].id
        _ = try await api.send(
            "POST", "/v1/consents", key: keys.app,
            json: [
                "subject": gpcUser, "purpose": "marketing", "granted": true, "method": "settings", "notice_version": "2026-01",
                "jurisdiction": "us_ca",
            ], expect: 201)
        let gpc = try await api.send(
            "POST", "/v1/consents", key: keys.app, json: ["subject": gpcUser, "notice_version": "2026-01", "jurisdiction": "us_ca"],
            headers: ["Sec-GPC": "1"], expect: 201)
        print(
            "   \(optedIn) of \(shop.users.count) opted in to personalization; GPC from one subject recorded as a marketing withdrawal (conflict with their opt-in flagged: \(gpc["gpc_conflict"] as? Bool ?? false))"
        )

        step("4. \(shop.events.count) events through POST /v1/events in batches of 500")
        var accepted = 0, anonymized = 0, rejected = 0
        for start in stride(from: 0, to: shop.events.count, by: 500) {
            let batch = Array(shop.events[start..<min(start + 500, shop.events.count)])
            let result = try await api.send("POST", "/v1/events", key: keys.app, body: try encoder.encode(["events": batch]), expect: 200)
            accepted += result["accepted"] as? Int ?? 0
            anonymized += result["anonymized"] as? Int ?? 0
            rejected += (result["rejected"] as? [Any])?.count ?? 0
        }
        print("   accepted \(accepted) (of which \(anonymized) without consent: only anonymous item counts kept), rejected \(rejected)")
        let bad = try await api.send(
            "POST", "/v1/events", key: keys.app,
            json: ["events": [["id": "x", "kind": "teleport", "subject": "u", "timestamp": "2026-01-01T00:00:00Z", "source": "web"]]], expect: 422)
        print("   a malformed event is refused with its reason: \((bad["rejected"] as? [[String: Any]])?.first?["reason"] ?? "")")

        step("5. train the hybrid recommender from the feature store (tokens and item ids only)")
        let trained = try await api.send("POST", "/v1/model/train", key: keys.admin, expect: 200)
        print("   model \(trained["model_version"] ?? "") over \(trained["users"] ?? "") subjects and \(trained["items"] ?? "") items")

        step("6. recommendations with explanations (as the recommendation client)")
        let shown = shop.users.enumerated().filter { $0.offset % 8 != 7 }.prefix(3).map(\.element)
        for user in shown {
            let recs = try await api.send("GET", "/v1/recommendations/\(encode(user.id))?k=5", key: keys.recs, expect: 200)
            print("   \(mask(user.id)) (tastes: \(user.tastes.joined(separator: ", "))) personalized=\(recs["personalized"] as? Bool ?? false)")
            for item in (recs["items"] as? [[String: Any]]) ?? [] {
                print("     - \(item["item"] ?? "") [\(item["reason"] ?? "")] \(item["explanation"] ?? "")")
            }
        }
        let denied = try await api.send("GET", "/v1/recommendations/\(encode(shop.users[7].id))?k=3", key: keys.recs, expect: 200)
        print(
            "   \(mask(shop.users[7].id)) opted out: personalized=\(denied["personalized"] as? Bool ?? false) reasons=\(((denied["items"] as? [[String: Any]]) ?? []).map { $0["reason"] as? String ?? "" })"
        )

        step("7. the shop's pages: what the tracking script (/sdk/veil.js, see `veil sdk`) sends with the browser key")
        let visitor = "anon-" + SecureRandom.bytes(16).hexString
        let fromShop = ["Origin": Self.shopOrigin]
        let beacon = "?key=" + keys.browser
        _ = try await api.send(
            "POST", "/v1/consents" + beacon, key: "",
            json: [
                "subject": visitor, "purpose": "personalization", "granted": true, "method": "banner", "notice_version": "2026-01",
                "jurisdiction": "EU",
            ], headers: fromShop, expect: 201)
        let view: [String: Any] = [
            "id": "demo-view", "kind": "page_view", "subject": visitor, "timestamp": Int(Date().timeIntervalSince1970 * 1000), "source": "web",
            "item": shop.items[0].id, "dwell_ms": 8400, "scroll_depth": 0.7,
        ]
        let sent = try await api.send("POST", "/v1/events" + beacon, key: "", json: ["events": [view]], headers: fromShop, expect: 200)
        print("   a visitor of \(Self.shopOrigin) accepts the banner: consent recorded, then a page view accepted=\(sent["accepted"] ?? 0)")
        let elsewhere = try await api.send(
            "POST", "/v1/events" + beacon, key: "", json: ["events": [view]], headers: ["Origin": "https://copycat.example"], expect: 403)
        print("   the same key copied into another site's page: 403 \((elsewhere["error"] as? [String: Any])?["code"] ?? "")")
        let unproven = try await api.send(
            "POST", "/v1/consents" + beacon, key: "",
            json: ["subject": shop.users[0].id, "purpose": "personalization", "granted": false, "notice_version": "2026-01"], headers: fromShop,
            expect: 403)
        print("   the same key naming a shop customer without the shop's proof: 403 \((unproven["error"] as? [String: Any])?["code"] ?? "")")

        step("8. withdrawal takes effect before the call returns")
        let withdrawer = shown[0].id
        _ = try await api.send(
            "POST", "/v1/consents", key: keys.app,
            json: [
                "subject": withdrawer, "purpose": "personalization", "granted": false, "method": "settings", "notice_version": "2026-01",
                "jurisdiction": "EU",
            ], expect: 201)
        let after = try await api.send("GET", "/v1/recommendations/\(encode(withdrawer))?k=3", key: keys.recs, expect: 200)
        print(
            "   \(mask(withdrawer)) withdrew: personalized=\(after["personalized"] as? Bool ?? false) reasons=\(((after["items"] as? [[String: Any]]) ?? []).map { $0["reason"] as? String ?? "" })"
        )

        step("9. erasure by crypto-shredding (as the compliance officer)")
        let erased = shown[1].id
        let erase = try await api.send("POST", "/v1/subjects/\(encode(erased))/erase", key: keys.officer, expect: 200)
        let export = try await api.send("GET", "/v1/subjects/\(encode(erased))/export", key: keys.officer, expect: 200)
        print("   erased \(mask(erased)): \(erase["rows_deleted"] ?? 0) rows shredded; export now has_data=\(export["has_data"] as? Bool ?? true)")
        let forbidden = try await api.send("GET", "/v1/audit?limit=1", key: keys.recs, expect: 403)
        print("   the recommendation client asking for the audit log gets 403: \((forbidden["error"] as? [String: Any])?["message"] ?? "")")

        step("10. the audit log, as the compliance officer")
        let page = try await api.send("GET", "/v1/audit?limit=1000&outcome=denied", key: keys.officer, expect: 200)
        print("   denied requests on record: \((page["entries"] as? [Any])?.count ?? 0)")
        let verify = try await api.send("GET", "/v1/audit/verify", key: keys.officer, expect: 200)
        guard verify["firstBadSequence"] == nil else { throw ValidationError("audit log failed verification: \(verify)") }
        print(
            "   verify on its own: \(verify["entries"] ?? 0) entries and \(verify["checkpoints"] ?? 0) signed heads agree; this proves \(verify["proves"] ?? "")"
        )
        // The officer keeps a signed head outside the gateway; later checks hold the log to it.
        let head = try await api.send("GET", "/v1/audit/checkpoint", key: keys.officer, expect: 200)
        let note = head["note"] as? String ?? ""
        print(
            "   the officer keeps the newest signed head (a C2SP checkpoint):\n"
                + note.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map { "     " + $0 }.joined(separator: "\n"))
        let proof = try await api.send("GET", "/v1/audit/entries/1/proof", key: keys.officer, expect: 200)
        print("   entry 1's inclusion proof in that tree: \((proof["hashes"] as? [Any])?.count ?? 0) hashes")
        return note
    }

    static let shopOrigin = "https://shop.example"

    func step(_ s: String) { print("\n== \(s)") }
    /// Subject ids are e-mail addresses here: show only their first letters.
    func mask(_ s: String) -> String { String(s.prefix(6)) + "…" }
    func encode(_ s: String) -> String { s.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? s }
}

/// A small JSON client over URLSession, for the demo.
struct Client: Sendable {
    let base: String

    func send(
        _ method: String, _ path: String, key: String, json: [String: Any], headers: [String: String] = [:], expect: Int
    ) async throws -> [String: Any] {
        try await send(method, path, key: key, body: try JSONSerialization.data(withJSONObject: json), headers: headers, expect: expect)
    }

    func send(
        _ method: String, _ path: String, key: String, body: Data? = nil, headers: [String: String] = [:], expect: Int
    ) async throws -> [String: Any] {
        var request = URLRequest(url: URL(string: base + path)!)
        request.httpMethod = method
        if !key.isEmpty { request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization") }
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
        request.httpBody = body
        // A retrain of a big generated shop takes minutes.
        request.timeoutInterval = 1800
        let (data, response): (Data, URLResponse)
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw ValidationError("\(method) \(path) got no answer from the demo's gateway: \(error.localizedDescription)")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        guard status == expect else {
            throw ValidationError("\(method) \(path) answered \(status), expected \(expect): \(String(decoding: data.prefix(300), as: UTF8.self))")
        }
        return object
    }
}
