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

/// Issue #28: a browser key is public (it sits in the shop's pages). What it may do, from where, and for whom, as an
/// attacker who copied it from a page would try it.
@Suite struct BrowserKeyTests {
    let anon = "anon-" + String(repeating: "3f", count: 16)

    /// A fixture whose refusals past the third per client and minute are counted, not recorded one by one; a fixed
    /// clock keeps the test inside one window. Returns it with its browser key.
    static func fixtureAuditingThreeRefusals() throws -> (GatewayFixture, String) {
        var limits = RefusalLimits()
        limits.individuallyAudited = 3
        let clock = TestClock(Date(timeIntervalSince1970: 1_795_400_010))
        let f = try GatewayFixture(refusalLimits: limits, now: clock.now)
        return (f, try #require(f.keys["browser"]))
    }

    func browserURL(_ path: String, key: String, proof: String? = nil) -> String {
        path + "?key=" + key + (proof.map { "&proof=" + $0 } ?? "")
    }

    @Test func theScriptIsServedToAnyPageUnauditedWithTheBytesThatWereShipped() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            let before = f.auditCount
            for (path, cache) in [("/sdk/veil.js", "max-age=300"), ("/sdk/veil-\(TrackingScript.version).js", "immutable")] {
                let r = try await client.call(.get, path, key: nil)
                #expect(r.status == 200)
                #expect(Array(r.body.utf8) == TrackingScript.bytes && !TrackingScript.bytes.isEmpty)
                #expect(r.headers[.contentType] == "text/javascript; charset=utf-8")
                #expect(r.headers[.accessControlAllowOrigin] == "*", "integrity with crossorigin=anonymous needs it")
                #expect(r.headers[.cacheControl]?.contains(cache) == true)
            }
            #expect(f.auditCount == before)
        }
    }

    /// A version's bytes are pinned by shops with Subresource Integrity: changing the script means a new version.
    @Test func aPublishedVersionKeepsItsIntegrityHash() throws {
        let published = ["1.0.0": "sha384-lf407ebymyom2+a8KHVKN61nModvmsMmTaBytXGLWJJcCQkzD5Z6nBRRMoJBkBz1"]
        let integrity = "sha384-" + Data(Hash.sha384(TrackingScript.bytes)).base64EncodedString()
        let pinned = try #require(
            published[TrackingScript.version], "version \(TrackingScript.version) is new: add its integrity \(integrity) to the published list")
        #expect(integrity == pinned, "veil.js changed under a published version: bump TrackingScript.version (pages pin \(pinned))")
    }

    @Test func aBrowserKeyWorksFromItsOriginWithTheKeyInTheURLAndTheAnswerNamesTheOrigin() async throws {
        let f = try GatewayFixture()
        let key = try #require(f.keys["browser"])
        try await f.app.test(.router) { client in
            let origin = ["Origin": GatewayFixture.shopOrigin, "Content-Type": "text/plain"]
            let c = try await client.call(.post, browserURL("/v1/consents", key: key), key: nil, json: consent(anon), headers: origin)
            #expect(c.status == 201, "\(c.body)")
            #expect(c.headers[.accessControlAllowOrigin] == GatewayFixture.shopOrigin && c.headers[.vary] == "Origin")
            let e = try await client.call(
                .post, browserURL("/v1/events", key: key), key: nil, json: ["events": [pageView("b-1", anon, "sku-1")]], headers: origin)
            #expect(e.status == 200 && e.json["accepted"] as? Int == 1, "\(e.body)")
            #expect(try f.storedInteractions(anon) == 1)
            // An error is readable by the page too (same origin header), in the one error shape.
            let bad = try await client.call(.post, browserURL("/v1/events", key: key), key: nil, raw: Array("{".utf8), headers: origin)
            #expect(bad.status == 400 && bad.headers[.accessControlAllowOrigin] == GatewayFixture.shopOrigin)
            // The key in the Authorization header works the same.
            let h = try await client.call(.post, "/v1/consents", key: key, json: consent(anon, "marketing", granted: false), headers: origin)
            #expect(h.status == 201)
        }
    }

    @Test func aCopiedKeyFromAnotherPageOrWithoutAPageIsRefusedAndAuditedInAggregate() async throws {
        let (f, key) = try Self.fixtureAuditingThreeRefusals()
        try await f.app.test(.router) { client in
            let before = f.auditCount
            for n in 0..<40 {
                let headers: [String: String] =
                    switch n % 4 {
                    case 0: ["Origin": "https://evil.example"]
                    case 1: [:]  // a script or curl: no page at all
                    case 2: ["Origin": "https://shop.example.evil.example"]
                    default: ["Origin": "null"]
                    }
                let r = try await client.call(.post, browserURL("/v1/consents", key: key), key: nil, json: consent(anon), headers: headers)
                #expect(r.status == 403, "\(headers): \(r.status)")
                #expect((r.json["error"] as? [String: Any])?["code"] as? String == "origin_not_allowed")
                #expect(r.headers[.accessControlAllowOrigin] == nil, "the other page may not read the answer")
                #expect(!r.body.contains(GatewayFixture.shopOrigin), "the refusal does not tell which origins the key has")
            }
            #expect(try f.hasData(anon) == false)
            #expect(f.auditCount == before + 3 + 1, "a few refusals one by one, the rest in one aggregate entry")
            let entries = try f.service.audit.query(AuditQuery(after: before, limit: 10))
            #expect(entries.allSatisfy { $0.record.actor == "anonymous" }, "\(entries.map(\.record.actor))")
            #expect(entries.first?.record.reason.contains("origin not configured") == true)
        }
    }

    @Test func aBrowserKeyMayNameOnlyTheScriptsIdsOrAShopProvenId() async throws {
        let f = try GatewayFixture()
        let key = try #require(f.keys["browser"])
        let secret = f.service.principals.identitySecret(ofKey: key)
        let origin = ["Origin": GatewayFixture.shopOrigin]
        try await f.app.test(.router) { client in
            // Someone else's shop id: an attacker with the page's key could otherwise withdraw (and so shred) their data.
            #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("customer-42")).status == 201)
            try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": [pageView("a-1", "customer-42", "sku-1")]])
            #expect(try f.storedInteractions("customer-42") == 1)
            let soon = Int64(Date().timeIntervalSince1970) + 3600
            let forged: [(String, String?)] = [
                ("no proof", nil), ("another subject's proof", SubjectProofs.proof(subject: "customer-43", secret: secret, expires: soon)),
                (
                    "a proof under another secret",
                    SubjectProofs.proof(subject: "customer-42", secret: "vs_" + String(repeating: "0", count: 64), expires: soon)
                ),
                ("an expired proof", SubjectProofs.proof(subject: "customer-42", secret: secret, expires: soon - 7200)),
                ("garbage", "zz"),
            ]
            for (what, proof) in forged {
                let w = try await client.call(
                    .post, browserURL("/v1/consents", key: key, proof: proof), key: nil, json: consent("customer-42", granted: false), headers: origin
                )
                #expect(w.status == 403 && (w.json["error"] as? [String: Any])?["code"] as? String == "subject_proof_required", "\(what): \(w.body)")
                let e = try await client.call(
                    .post, browserURL("/v1/events", key: key, proof: proof), key: nil,
                    json: ["events": [pageView("x-\(what)", anon, "sku-2"), pageView("y-\(what)", "customer-42", "sku-3")]], headers: origin)
                #expect(e.status == 403, "\(what): a batch naming an unproven id is refused whole")
            }
            #expect(try f.storedInteractions("customer-42") == 1, "nothing withdrawn, nothing added")
            #expect(try f.hasData(anon) == false)
            // Ids that look like the script's but are not (upper case, short, another prefix) need a proof too.
            for lookalike in ["anon-" + String(repeating: "3F", count: 16), "anon-1234", "anonx" + String(repeating: "a", count: 32)] {
                let r = try await client.call(.post, browserURL("/v1/consents", key: key), key: nil, json: consent(lookalike), headers: origin)
                #expect(r.status == 403, "\(lookalike)")
            }
            // With the shop's proof the signed-in person's choice and events go through.
            let proof = SubjectProofs.proof(subject: "customer-42", secret: secret, expires: soon)
            let e = try await client.call(
                .post, browserURL("/v1/events", key: key, proof: proof), key: nil, json: ["events": [pageView("b-2", "customer-42", "sku-4")]],
                headers: origin)
            #expect(e.status == 200 && e.json["accepted"] as? Int == 1, "\(e.body)")
            #expect(try f.storedInteractions("customer-42") == 2)
            let w = try await client.call(
                .post, browserURL("/v1/consents", key: key, proof: proof), key: nil, json: consent("customer-42", granted: false), headers: origin)
            #expect(w.status == 201)
            #expect(try f.hasData("customer-42") == false, "the person's own withdrawal from the page shreds their data")
            // One proof vouches for its id's bytes only: not for a canonically equivalent spelling (a token of its own).
            let nfc = "caf\u{E9}-42", nfd = "cafe\u{301}-42"
            let cafe = SubjectProofs.proof(subject: nfc, secret: secret, expires: soon)
            let mixed = try await client.call(
                .post, browserURL("/v1/events", key: key, proof: cafe), key: nil,
                json: ["events": [pageView("u-1", nfc, "sku-5"), pageView("u-2", nfd, "sku-6")]], headers: origin)
            #expect(mixed.status == 403, "\(mixed.body)")
            #expect(try f.hasData(nfc) == false && f.hasData(nfd) == false)
            // A page records its visitor's choice: not an import, not a GPC signal dressed as a method.
            var imported = consent(anon)
            imported["method"] = "import"
            #expect(try await client.call(.post, browserURL("/v1/consents", key: key), key: nil, json: imported, headers: origin).status == 422)
        }
    }

    /// Refusals to a browser key (anyone can copy it from a page) must leave a bounded record, as refusals without a
    /// key do: a few entries of their own per client and window, the rest counted in one entry.
    @Test func refusalsToABrowserKeyCannotFloodTheAuditLog() async throws {
        let (f, key) = try Self.fixtureAuditingThreeRefusals()
        try await f.app.test(.router) { client in
            let before = f.auditCount
            for n in 0..<60 {
                let body: [String: Any] = ["events": [pageView("f-\(n)", "customer-\(n)", "sku-1")]]
                let r = try await client.call(
                    .post, browserURL("/v1/events", key: key), key: nil, json: body, headers: ["Origin": GatewayFixture.shopOrigin])
                #expect(r.status == 403 || r.status == 429, "an unproven id, then past the key's rate limit: \(r.status)")
            }
            #expect(f.auditCount == before + 3 + 1, "\(f.auditCount - before) entries for 60 refusals")
            let own = try f.service.audit.query(AuditQuery(after: before, limit: 3))
            #expect(own.allSatisfy { $0.record.actor == "p-browser" }, "the first ones name the key: \(own.map(\.record.actor))")
        }
    }

    /// A browser with Global Privacy Control on sends `Sec-GPC: 1` with every batch: the ledger records it once.
    @Test func gpcOnEveryBatchIsRecordedOnce() async throws {
        let f = try GatewayFixture()
        let key = try #require(f.keys["browser"])
        try await f.app.test(.router) { client in
            let headers = ["Origin": GatewayFixture.shopOrigin, "Sec-GPC": "1"]
            #expect(try await client.call(.post, browserURL("/v1/consents", key: key), key: nil, json: consent(anon), headers: headers).status == 201)
            for n in 0..<4 {
                let r = try await client.call(
                    .post, browserURL("/v1/events", key: key), key: nil, json: ["events": [pageView("g-\(n)", anon, "sku-\(n)")]], headers: headers)
                #expect(r.status == 200)
            }
            let history = try await client.call(.get, "/v1/consents/\(anon)/history", key: f.keys["compliance-officer"])
            let methods = (history.json["events"] as? [[String: Any]] ?? []).compactMap { ($0["event"] as? [String: Any])?["method"] as? String }
            #expect(methods.filter { $0 == "gpc" }.count == 1, "\(methods)")
        }
    }

    @Test func aPageCannotClaimPurchasesOrProfilesAndCannotReadAnything() async throws {
        let f = try GatewayFixture()
        let key = try #require(f.keys["browser"])
        let origin = ["Origin": GatewayFixture.shopOrigin]
        try await f.app.test(.router) { client in
            #expect(try await client.call(.post, browserURL("/v1/consents", key: key), key: nil, json: consent(anon), headers: origin).status == 201)
            let purchase: [String: Any] = [
                "id": "p-1", "kind": "purchase", "subject": anon, "timestamp": "2026-11-20T10:00:00Z", "source": "web", "order": "o-1",
                "lines": [["item": "sku-9", "quantity": 1, "unit_price": 10, "currency": "EUR"]],
            ]
            let profile: [String: Any] = [
                "id": "p-2", "kind": "profile", "subject": anon, "timestamp": "2026-11-20T10:00:00Z", "source": "web", "age": 30,
            ]
            let r = try await client.call(
                .post, browserURL("/v1/events", key: key), key: nil, json: ["events": [purchase, pageView("v-1", anon, "sku-1"), profile]],
                headers: origin)
            #expect(r.status == 200 && r.json["accepted"] as? Int == 1, "\(r.body)")
            let reasons = (r.json["rejected"] as? [[String: Any]] ?? []).map { "\($0["index"] ?? "") \($0["reason"] ?? "")" }
            #expect(reasons.count == 2 && reasons.allSatisfy { $0.contains("a browser key cannot send") }, "\(reasons)")
            #expect(try f.storedInteractions(anon) == 1)
            for (method, path) in [
                (HTTPRequest.Method.get, "/v1/consents/\(anon)"), (.get, "/v1/recommendations/\(anon)"), (.get, "/v1/subjects/\(anon)/export"),
                (.get, "/v1/audit"),
            ] {
                let read = try await client.call(method, browserURL(path, key: key), key: nil, headers: origin)
                #expect(read.status == 403, "\(path): \(read.status)")
            }
        }
    }

    @Test func aSecretKeyInTheURLIsRefused() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            let r = try await client.call(.post, browserURL("/v1/consents", key: try #require(f.keys["app"])), key: nil, json: consent(anon))
            #expect(r.status == 401 && (r.json["error"] as? [String: Any])?["message"] as? String ?? "" != "")
            #expect(r.body.contains("only a browser key may be sent in the URL"))
            #expect(try f.hasData(anon) == false)
            let entry = try #require(try f.service.audit.query(AuditQuery(after: f.auditCount - 1, limit: 1)).first)
            #expect(entry.record.actor == "p-app" && entry.record.reason.contains("replace it"), "the operator learns which key leaked")
        }
    }

    @Test func browserKeysNeedOriginsAndOnlyThemHaveAny() throws {
        let f = try GatewayFixture()
        let roles = Set(f.service.policy.roles.keys)
        #expect(throws: (any Error).self) { try f.service.principals.add(name: "b1", role: "browser", knownRoles: roles) }
        for bad in ["shop.example", "https://shop.example/path", "https://*.shop.example", "null", "ftp://shop.example", "https://u:p@shop.example"] {
            #expect(throws: (any Error).self, "\(bad)") {
                try f.service.principals.add(name: "b2", role: "browser", origins: [bad], knownRoles: roles)
            }
        }
        #expect(throws: (any Error).self) {
            try f.service.principals.add(name: "a1", role: "app", origins: ["https://shop.example"], knownRoles: roles)
        }
        _ = try f.service.principals.add(
            name: "b3", role: "browser", origins: ["HTTPS://Shop.Example:8443/", "https://shop.example:443", "http://a.example:80"], knownRoles: roles
        )
        #expect(
            try f.service.principals.list().first { $0.name == "b3" }?.origins == [
                "https://shop.example:8443", "https://shop.example", "http://a.example",
            ],
            "as a browser sends them in Origin: the scheme's default port left out")
    }

    /// One client here (the router test has no addresses); scripts/browser_test.py shows two addresses limited apart.
    @Test func aBrowserKeyIsRateLimited() async throws {
        var limits = RateLimiter.defaults
        limits["browser"] = RateLimit(perSecond: 0.001, burst: 3)
        let f = try GatewayFixture(rateLimits: limits)
        let key = try #require(f.keys["browser"])
        try await f.app.test(.router) { client in
            var statuses: [Int] = []
            for _ in 0..<5 {
                statuses.append(
                    try await client.call(
                        .post, browserURL("/v1/consents", key: key), key: nil, json: consent(anon), headers: ["Origin": GatewayFixture.shopOrigin]
                    ).status)
            }
            #expect(statuses == [201, 201, 201, 429, 429])
        }
    }
}
