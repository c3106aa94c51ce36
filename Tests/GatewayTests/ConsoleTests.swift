import Audit
import Foundation
import VeilCore
import Gateway
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Policy
import Storage
import SQLiteStorage
import Testing

/// Issue #26: the compliance console, as an attacker and an officer would try it (the browser test drives the same
/// pages in Chromium).
@Suite struct ConsoleTests {
    struct Page {
        var status: Int
        var headers: HTTPFields
        var body: String
        func cookie(_ name: String) -> String? {
            headers[values: .setCookie].first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1).prefix { $0 != ";" }) }
        }
        /// The value of the first hidden `csrf` field.
        var csrf: String? {
            guard let r = body.range(of: "name=\"csrf\" value=\"") else { return nil }
            return String(body[r.upperBound...].prefix { $0 != "\"" })
        }
    }

    static func get(_ client: some TestClientProtocol, _ uri: String, session: String? = nil) async throws -> Page {
        var h = HTTPFields()
        if let session { h[.cookie] = "veil_console=\(session)" }
        let r = try await client.execute(uri: uri, method: .get, headers: h, body: nil)
        return Page(status: Int(r.status.code), headers: r.headers, body: String(buffer: r.body))
    }

    static func post(_ client: some TestClientProtocol, _ uri: String, _ form: [String: String], cookie: String? = nil) async throws -> Page {
        var h = HTTPFields()
        h[.contentType] = "application/x-www-form-urlencoded"
        if let cookie { h[.cookie] = cookie }
        let body = form.map { k, v in
            k + "=" + (v.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? v)
        }.joined(separator: "&")
        let r = try await client.execute(uri: uri, method: .post, headers: h, body: ByteBuffer(string: body))
        return Page(status: Int(r.status.code), headers: r.headers, body: String(buffer: r.body))
    }

    /// Signs in with `key`; returns the session cookie's value and the page's CSRF token.
    static func signIn(_ client: some TestClientProtocol, key: String) async throws -> (session: String, csrf: String) {
        let form = try await get(client, "/console/signin")
        let token = try #require(form.cookie("veil_signin"))
        let answer = try await post(client, "/console/session", ["key": key, "csrf": try #require(form.csrf)], cookie: "veil_signin=\(token)")
        #expect(answer.status == 303 && answer.headers[.location] == "/console/audit", "\(answer.status) \(answer.body)")
        let session = try #require(answer.cookie("veil_console"))
        let page = try await get(client, "/console/audit", session: session)
        return (session, try #require(page.csrf))
    }

    @Test func aKeyIsExchangedForAStrictSessionAndEveryPageIsLockedDown() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            let before = f.auditCount
            let form = try await Self.get(client, "/console/signin")
            #expect(form.status == 200 && f.auditCount == before, "the sign-in form reads nothing and is not audited")
            let (session, _) = try await Self.signIn(client, key: try #require(f.keys["compliance-officer"]))
            let signedIn = try #require(try f.service.audit.query(AuditQuery(after: before, limit: 1)).first)
            #expect(signedIn.record.action == "console:signin" && signedIn.record.actor == "p-compliance-officer")
            // The cookie: HttpOnly, SameSite=Strict, only for /console (no Secure without TLS).
            let again = try await Self.post(
                client, "/console/session", ["key": try #require(f.keys["compliance-officer"]), "csrf": "x"], cookie: "veil_signin=x")
            let setCookie = again.headers[values: .setCookie].first { $0.hasPrefix("veil_console=") } ?? ""
            #expect(setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Strict") && setCookie.contains("Path=/console"))
            for path in ["/console/audit", "/console/integrity", "/console/subjects", "/console/operations"] {
                let page = try await Self.get(client, path, session: session)
                #expect(page.status == 200, "\(path): \(page.status)")
                #expect(page.headers[.cacheControl] == "no-store", "\(path)")
                let csp = page.headers[.contentSecurityPolicy] ?? ""
                #expect(csp.contains("default-src 'none'") && !csp.contains("unsafe") && !csp.contains("script-src"), "\(path): \(csp)")
                #expect(!page.body.contains("<script") && !page.body.contains("http://") && !page.body.contains("https://"), "\(path)")
            }
            let integrity = try await Self.get(client, "/console/integrity", session: session)
            #expect(integrity.body.contains("Intact"))
            // Without a session: a page that says to sign in.
            let anonymous = try await Self.get(client, "/console/audit")
            #expect(anonymous.status == 401 && anonymous.body.contains("/console/signin"))
        }
    }

    /// Anonymous requests to the console, or to public pages under other spellings (`/console/`, `/health/live/`), leave
    /// a bounded record: the first few a minute one by one, then one counted entry.
    @Test func anonymousTrafficCannotFloodTheAuditLog() async throws {
        var limits = RefusalLimits()
        limits.individuallyAudited = 3
        let clock = TestClock(Date(timeIntervalSince1970: 1_795_400_010))
        let f = try GatewayFixture(refusalLimits: limits, now: clock.now)
        try await f.app.test(.router) { client in
            let flood = f.auditCount
            for n in 0..<60 {
                let path = ["/console/", "/console/signin/", "/console//audit", "/console/nowhere", "/health/live/", "/console/audit"][n % 6]
                let r = try await Self.get(client, path)
                #expect(r.status < 500, "\(path): \(r.status)")
                #expect(r.headers[.cacheControl] == "no-store" || !path.hasPrefix("/console"), "\(path) without the console's headers")
            }
            #expect(f.auditCount - flood <= 3 + 1, "60 anonymous requests left \(f.auditCount - flood) entries")
        }
    }

    @Test func keysOfOtherRolesCannotSignIn() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            for role in ["recommendation-client", "app", "browser", "witness"] {
                let form = try await Self.get(client, "/console/signin")
                let token = try #require(form.cookie("veil_signin"))
                let r = try await Self.post(
                    client, "/console/session", ["key": try #require(f.keys[role]), "csrf": try #require(form.csrf)], cookie: "veil_signin=\(token)")
                #expect(r.status == 403 && r.body.contains("cannot sign in") && r.cookie("veil_console") == nil, "\(role): \(r.status)")
            }
            let form = try await Self.get(client, "/console/signin")
            let r = try await Self.post(
                client, "/console/session", ["key": "vk_" + String(repeating: "1", count: 64), "csrf": try #require(form.csrf)],
                cookie: "veil_signin=\(try #require(form.cookie("veil_signin")))")
            #expect(r.status == 401)
            // The admin may (and sees the principals); the officer does not see them.
            let admin = try await Self.signIn(client, key: try #require(f.keys["admin"]))
            #expect(try await Self.get(client, "/console/operations", session: admin.session).body.contains("Principals"))
            let officer = try await Self.signIn(client, key: try #require(f.keys["compliance-officer"]))
            let operations = try await Self.get(client, "/console/operations", session: officer.session)
            #expect(!operations.body.contains("Principals") && operations.body.contains("<svg"))
            let revoke = try await Self.post(
                client, "/console/principals/revoke", ["name": "p-app", "confirm": "p-app", "csrf": officer.csrf],
                cookie: "veil_console=\(officer.session)")
            #expect(revoke.status == 403, "an officer may not revoke principals")
        }
    }

    @Test func formsWithoutTheirTokenAreRefusedAndChangeNothing() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("u-7"))
            try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": [pageView("e-7", "u-7", "sku-1")]])
            let officer = try await Self.signIn(client, key: try #require(f.keys["compliance-officer"]))
            let cookie = "veil_console=\(officer.session)"
            for form in [
                ["subject": "u-7", "confirm": "u-7"],
                ["subject": "u-7", "confirm": "u-7", "csrf": (officer.csrf.first == "0" ? "1" : "0") + officer.csrf.dropFirst()],
            ] {
                let r = try await Self.post(client, "/console/subjects/erase", form, cookie: cookie)
                #expect(r.status == 403 && r.body.contains("security token"), "\(r.status)")
            }
            // Sign-in without its own token (login CSRF: another site signing the officer into the attacker's session) is
            // refused too, an empty token included, and so is any form a browser says comes from another site.
            for token in ["abc", ""] {
                let forced = try await Self.post(client, "/console/session", ["key": try #require(f.keys["admin"]), "csrf": token], cookie: nil)
                #expect(forced.status == 403 && forced.cookie("veil_console") == nil, "token '\(token)'")
            }
            var h = HTTPFields()
            h[.contentType] = "application/x-www-form-urlencoded"
            h[.cookie] = cookie
            h[HTTPField.Name("Sec-Fetch-Site")!] = "cross-site"
            let crossSite = try await client.execute(
                uri: "/console/subjects/erase", method: .post, headers: h, body: ByteBuffer(string: "subject=u-7&confirm=u-7&csrf=\(officer.csrf)"))
            #expect(crossSite.status == .forbidden)
            // A mistyped confirmation erases nothing.
            let mistyped = try await Self.post(
                client, "/console/subjects/erase", ["subject": "u-7", "confirm": "u-8", "csrf": officer.csrf], cookie: cookie)
            #expect(mistyped.status == 422)
            #expect(try f.hasData("u-7"))
            let erased = try await Self.post(
                client, "/console/subjects/erase", ["subject": "u-7", "confirm": "u-7", "csrf": officer.csrf], cookie: cookie)
            #expect(erased.status == 303)
            #expect(try f.hasData("u-7") == false)
            let result = try await Self.get(client, try #require(erased.headers[.location]), session: officer.session)
            #expect(result.body.contains("Erased") && result.body.contains("audit entry"), "\(result.body)")
            // The refused attempts are on record (denied, rejected); the erasure once, allowed, under the officer.
            let attempts = try f.service.audit.query(AuditQuery(action: "subjects:erase", limit: 10))
            #expect(attempts.map(\.record.outcome) == ["denied", "denied", "denied", "rejected", "allowed"], "\(attempts.map(\.record.outcome))")
            let entries = attempts.filter { $0.record.outcome == "allowed" }
            #expect(
                entries.count == 1 && entries[0].record.actor == "p-compliance-officer" && entries[0].record.subjectToken == f.token("u-7").rawValue)
            #expect(result.body.contains("/console/audit/\(entries[0].sequence)"))
        }
    }

    /// An export shows what it did and its audit entry, and hands the file out once.
    @Test func anExportShowsItsOutcomeAndItsEntryAndIsDownloadedOnce() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("u-9"))
            try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": [pageView("e-9", "u-9", "sku-1")]])
            let officer = try await Self.signIn(client, key: try #require(f.keys["compliance-officer"]))
            let cookie = "veil_console=\(officer.session)"
            let bad = try await Self.post(
                client, "/console/subjects/export", ["subject": "u-9", "recipient": "zz", "csrf": officer.csrf], cookie: cookie)
            #expect(bad.status == 400)
            let made = try await Self.post(client, "/console/subjects/export", ["subject": "u-9", "csrf": officer.csrf], cookie: cookie)
            #expect(made.status == 303)
            let result = try await Self.get(client, try #require(made.headers[.location]), session: officer.session)
            #expect(result.body.contains("Exported: 1 consent events, 1 interactions"), "\(result.body)")
            let entry = try #require(
                try f.service.audit.query(AuditQuery(action: "subjects:export", outcome: .allowed, limit: 10)).first)
            #expect(entry.record.subjectToken == f.token("u-9").rawValue && result.body.contains("/console/audit/\(entry.sequence)"))
            let request = try #require(made.headers[.location]?.components(separatedBy: "request=").last)
            let file = try await Self.get(client, "/console/result/download?request=\(request)", session: officer.session)
            #expect(
                file.status == 200 && file.headers[.contentDisposition]?.hasPrefix("attachment") == true && file.headers[.cacheControl] == "no-store")
            let json = try JSONSerialization.jsonObject(with: Data(file.body.utf8)) as? [String: Any]
            #expect(json?["has_data"] as? Bool == true && (json?["interactions"] as? [Any])?.count == 1)
            #expect(try await Self.get(client, "/console/result/download?request=\(request)", session: officer.session).status == 404, "once")
            // Another session cannot fetch it.
            let admin = try await Self.signIn(client, key: try #require(f.keys["admin"]))
            let again = try await Self.post(client, "/console/subjects/export", ["subject": "u-9", "csrf": officer.csrf], cookie: cookie)
            let other = try #require(again.headers[.location]?.components(separatedBy: "request=").last)
            #expect(try await Self.get(client, "/console/result/download?request=\(other)", session: admin.session).status == 404)
        }
    }

    @Test func aSearchIsAuditedAsTheAPIsAndTheIdIsShownOnlyWhereItWasTyped() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("mira@example.com"))
            let officer = try await Self.signIn(client, key: try #require(f.keys["compliance-officer"]))
            let cookie = "veil_console=\(officer.session)"
            // The id goes in a form, never in an address (history, proxies' logs).
            #expect(try await Self.get(client, "/console/audit?subject=mira%40example.com", session: officer.session).status == 400)
            #expect(try await Self.get(client, "/console/subjects?subject=mira%40example.com", session: officer.session).status == 400)
            let before = f.auditCount
            let page = try await Self.post(client, "/console/audit", ["subject": "mira@example.com", "csrf": officer.csrf], cookie: cookie)
            #expect(page.status == 200)
            #expect(page.body.components(separatedBy: "mira@example.com").count == 2, "the typed id appears once: in the search box")
            #expect(page.body.contains("POST /v1/consents"), "the consent request is found by the person's id")
            let entry = try #require(try f.service.audit.query(AuditQuery(after: before, limit: 1)).first)
            #expect(entry.record.action == "audit:read" && entry.record.subjectToken == f.token("mira@example.com").rawValue)
            #expect(!entry.record.resource.contains("mira") && !entry.record.reason.contains("mira"))
            let record = try await Self.post(client, "/console/subjects", ["subject": "mira@example.com", "csrf": officer.csrf], cookie: cookie)
            #expect(record.body.contains("banner") && record.body.contains("EU") && record.body.contains(f.token("mira@example.com").rawValue))
        }
    }

    @Test func sessionsEndWhenIdleAndWhenThePrincipalIsRevoked() async throws {
        let clock = TestClock(Date(timeIntervalSince1970: 1_795_400_010))
        let f = try GatewayFixture(now: clock.now)
        try await f.app.test(.router) { client in
            let officer = try await Self.signIn(client, key: try #require(f.keys["compliance-officer"]))
            clock.advance(14 * 60)
            #expect(try await Self.get(client, "/console/audit", session: officer.session).status == 200)
            clock.advance(16 * 60)
            #expect(try await Self.get(client, "/console/audit", session: officer.session).status == 401, "idle for 16 minutes")
            let admin = try await Self.signIn(client, key: try #require(f.keys["admin"]))
            try await f.service.principals.revoke(name: "p-admin")  // as `veil principals revoke` would, from another process
            #expect(try await Self.get(client, "/console/audit", session: admin.session).status == 401)
            let again = try await Self.signIn(client, key: try #require(f.keys["compliance-officer"]))
            let out = try await Self.post(client, "/console/signout", ["csrf": again.csrf], cookie: "veil_console=\(again.session)")
            #expect(out.status == 303)
            #expect(try await Self.get(client, "/console/audit", session: again.session).status == 401, "signed out")
            // Revoked through the API: the session is gone at once.
            let officer2 = try await Self.signIn(client, key: try #require(f.keys["compliance-officer"]))
            let other = try f.service.principals.add(name: "ops2", role: "admin", knownRoles: Set(f.service.policy.roles.keys))
            #expect(try await client.call(.delete, "/v1/principals/p-compliance-officer", key: other).status == 200)
            #expect(try await Self.get(client, "/console/audit", session: officer2.session).status == 401)
        }
    }
}
