import Audit
import Foundation
import VeilCore
import HTTPTypes
import Hummingbird
import Logging
import Mustache
import Policy

/// The compliance console under `/console`: pages rendered on the server from the templates in `console/`, no
/// script, nothing from another origin. Each page stands for an API route and is authorized and audited as that
/// route's action, under the signed-in principal.
enum Console {
    /// A page that needs no session (signing in, the style sheet).
    typealias Page = @Sendable (ConsoleRequest) async throws -> Response
    /// A page behind a session: it gets the session whose role its action admitted.
    typealias SignedInPage = @Sendable (ConsoleRequest, ConsoleSessions.Session) async throws -> Response

    struct Route: Sendable {
        let method: HTTPRequest.Method
        let path: String
        /// The API action the page stands for; nil for the pages that need no session.
        let action: Action?
        let respond: @Sendable (ConsoleRequest) async throws -> Response
        /// What its audit entry names: the API action, or the console's own for signing in and out.
        var auditAction: String { action?.rawValue ?? (path == "/console/signout" ? SystemAction.consoleSignout : .consoleSignin).rawValue }

        /// A page anyone may open.
        static func open(_ method: HTTPRequest.Method, _ path: String, _ page: @escaping Page) -> Route {
            Route(method: method, path: path, action: nil, respond: page)
        }

        /// A page for a session whose role holds `action` (and, on a form, its CSRF token).
        static func page(_ method: HTTPRequest.Method, _ path: String, _ action: Action, _ page: @escaping SignedInPage) -> Route {
            Route(method: method, path: path, action: action, respond: { call in try await page(call, try call.authorize(action)) })
        }
    }

    /// Not audited: the sign-in form, the style sheet and the redirect to the start page (they read nothing). Signing
    /// in (`POST /console/session`) is.
    static let publicPaths: Set<String> = ["/console", "/console/signin", "/console/console.css"]
    static let sessionCookie = "veil_console"
    static let signinCookie = "veil_signin"

    static func register(on router: Router<VeilRequestContext>, service: VeilService, secureCookies: Bool) {
        // Signed-in users, kept in this process only: one table per router.
        let sessions = ConsoleSessions()
        for route in routes {
            router.on(RouterPath(route.path), method: route.method) { request, context -> Response in
                context.audit.update { $0.action = route.auditAction }
                do {
                    let call = try await ConsoleRequest(
                        service: service, sessions: sessions, request: request, context: context, secureCookies: secureCookies)
                    return try await route.respond(call)
                } catch let error as ConsoleError {
                    return error.page
                } catch {
                    let mapped = GatewayError.from(error)
                    let message = mapped.status.code >= 500 ? "something went wrong (request \(context.requestID))" : mapped.message
                    if mapped.status.code >= 500 { service.logger.error("console page failed", metadata: ["request_id": "\(context.requestID)"]) }
                    var headers = HTTPFields()
                    if let wait = mapped.headers[.retryAfter] { headers[.retryAfter] = wait }
                    return render("error", ["title": "Error", "message": message], status: mapped.status, headers: headers)
                }
            }
        }
    }

    static let routes: [Route] = [
        .open(.get, "/console") { _ in redirect("/console/audit") },
        .open(.get, "/console/console.css") { _ in
            Response(
                status: .ok, headers: [.contentType: "text/css; charset=utf-8", .cacheControl: "public, max-age=300"],
                body: .init(byteBuffer: ByteBuffer(bytes: Embedded.console_css)))
        },
        .open(.get, "/console/signin", ConsoleAuth.form),
        .open(.post, "/console/session", ConsoleAuth.signIn),
        .open(.post, "/console/signout", ConsoleAuth.signOut),
        // Searches by a person's id are forms sent by POST: the id stays out of URLs, browser history and proxies' logs.
        .page(.get, "/console/audit", .auditRead, ConsolePages.auditLog),
        .page(.post, "/console/audit", .auditRead, ConsolePages.auditLog),
        .page(.get, "/console/audit/{seq}", .auditRead, ConsolePages.auditEntry),
        .page(.get, "/console/integrity", .auditRead, ConsolePages.integrity),
        .page(.get, "/console/integrity/head", .auditHeads, ConsolePages.downloadHead),
        .page(.get, "/console/subjects", .consentRead, ConsolePages.subject),
        .page(.post, "/console/subjects", .consentRead, ConsolePages.subject),
        .page(.post, "/console/subjects/export", .subjectsExport, ConsolePages.export),
        .page(.post, "/console/subjects/erase", .subjectsErase, ConsolePages.erase),
        .page(.get, "/console/result", .auditRead, ConsolePages.result),
        .page(.get, "/console/result/download", .subjectsExport, ConsolePages.download),
        .page(.get, "/console/operations", .auditRead, ConsolePages.operations),
        .page(.post, "/console/principals/revoke", .principalsWrite, ConsolePages.revoke),
        // Any other path under /console: a page, not the API's JSON, with the console's headers.
        .open(.get, "/console/**") { _ in
            throw ConsoleError(status: .notFound, title: "No such page", message: "The console has no such page.")
        },
    ]

    /// The templates, compiled once from the files the build embedded.
    static let library: MustacheLibrary = {
        var templates: [String: MustacheTemplate] = [:]
        for (name, bytes) in Embedded.consoleTemplates {
            // The templates ship with the binary and are tested: a broken one is a build mistake, not a runtime state.
            templates[name] = try! MustacheTemplate(string: String(decoding: bytes, as: UTF8.self))
        }
        return MustacheLibrary(templates: templates)
    }()

    /// Headers of every console page: nothing cached, nothing framed, no script, nothing from elsewhere.
    static func secured(_ headers: inout HTTPFields) {
        headers[.cacheControl] = "no-store"
        headers[.contentSecurityPolicy] =
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
    }

    static func render(_ template: String, _ values: [String: Any], status: HTTPResponse.Status = .ok, headers extra: HTTPFields = [:]) -> Response {
        let html = library.render(values, withTemplate: template) ?? "template \(template) is missing"
        var headers: HTTPFields = [.contentType: "text/html; charset=utf-8"]
        secured(&headers)
        headers.append(contentsOf: extra)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    static func redirect(_ location: String, headers extra: HTTPFields = [:]) -> Response {
        var headers: HTTPFields = [.location: location]
        secured(&headers)
        headers.append(contentsOf: extra)
        return Response(status: .seeOther, headers: headers)
    }

    static func cookie(_ name: String, _ value: String, secure: Bool, maxAge: Int? = nil) -> String {
        var c = "\(name)=\(value); Path=/console; HttpOnly; SameSite=Strict"
        if secure { c += "; Secure" }
        if let maxAge { c += "; Max-Age=\(maxAge)" }
        return c
    }
}

/// An error shown as a console page.
struct ConsoleError: Error {
    let status: HTTPResponse.Status
    let title: String
    let message: String

    var page: Response {
        Console.render("error", ["title": title, "message": message, "signin": status == .unauthorized], status: status)
    }

    static let signedOut = ConsoleError(
        status: .unauthorized, title: "Sign in", message: "Your session has ended or never began. Sign in with your API key.")
    static let badForm = ConsoleError(
        status: .forbidden, title: "Form refused", message: "The form lacked its security token or it had expired. Open the page again and retry.")
}

/// One console request: the service, the parsed cookies and form, and the session if there is one.
struct ConsoleRequest: Sendable {
    let service: VeilService
    let sessions: ConsoleSessions
    let request: Request
    let context: VeilRequestContext
    let secureCookies: Bool
    let cookies: [String: String]
    let form: [String: String]
    let sessionID: String?
    let session: ConsoleSessions.Session?

    init(service: VeilService, sessions: ConsoleSessions, request: Request, context: VeilRequestContext, secureCookies: Bool) async throws {
        self.service = service
        self.sessions = sessions
        self.request = request
        self.context = context
        self.secureCookies = secureCookies
        cookies = Self.parseCookies(request.headers[values: .cookie])
        form = request.method == .post ? Self.parseForm(try await API.collect(request, context)) : [:]
        sessionID = cookies[Console.sessionCookie]
        var live = sessionID.flatMap { sessions.use($0, now: service.now()) }
        // A principal revoked since sign-in (here or from the command line) loses its sessions.
        if let s = live, try await service.principals.active(name: s.principal.name) == nil {
            sessions.drop(principal: s.principal.name)
            live = nil
        }
        session = live
        if let live {
            context.audit.update {
                $0.actor = live.principal.name; $0.role = live.principal.role
            }
            try Self.limit(live.principal, service: service, note: context.audit)
        }
    }

    /// The principal's rate limit, as on the API: a console page costs what its API call does.
    static func limit(_ principal: Principal, service: VeilService, note: AuditNote) throws {
        try service.enforceRateLimit(bucket: principal.name, role: principal.role, note: note)
    }

    /// Needs a session whose role holds `action`, and on a form, the session's CSRF token.
    func authorize(_ action: Action) throws -> ConsoleSessions.Session {
        guard let session else {
            context.audit.update { $0.reason = "no console session" }
            throw ConsoleError.signedOut
        }
        guard service.policy.allows(role: session.principal.role, action) else {
            context.audit.update { $0.reason = "role lacks \(action.rawValue)" }
            throw ConsoleError(
                status: .forbidden, title: "Not allowed", message: "Your role (\(session.principal.role)) may not \(action.rawValue).")
        }
        if request.method == .post { try checkCSRF(session.csrf) }
        return session
    }

    func checkCSRF(_ expected: String) throws {
        // A form from another site is refused whatever it carries (a browser says where a request comes from).
        let site = request.headers[HTTPField.Name("Sec-Fetch-Site")!]
        let crossSite = site.map { $0 != "same-origin" && $0 != "none" } ?? false
        guard !crossSite, !expected.isEmpty, let given = form["csrf"], FormToken.matches(given, expected) else {
            context.audit.update { $0.reason = "form without a valid CSRF token" }
            throw ConsoleError.badForm
        }
    }

    /// A form field (POST) or query parameter (GET), nil when absent or empty.
    func field(_ name: String) -> String? {
        let value = request.method == .post ? form[name] : request.uri.queryParameters[Substring(name)].map(String.init)
        return value.flatMap { $0.isEmpty ? nil : $0 }
    }

    static let idInURL = ConsoleError(
        status: .badRequest, title: "Use the form",
        message: "A person's id is sent with the search form, never in the address: addresses stay in browser history and proxies' logs.")

    /// Values every page's layout reads.
    func base(_ title: String, _ values: [String: Any] = [:]) -> [String: Any] {
        var v = values
        v["title"] = title
        if let session {
            v["user"] = session.principal.name
            v["role"] = session.principal.role
            v["csrf"] = session.csrf
            v["admin"] = service.policy.allows(role: session.principal.role, .principalsWrite)
        }
        return v
    }

    static func parseCookies(_ headers: [String]) -> [String: String] {
        var out: [String: String] = [:]
        for header in headers {
            for part in header.split(separator: ";") {
                let pair = part.split(separator: "=", maxSplits: 1)
                guard pair.count == 2 else { continue }
                out[pair[0].trimmingCharacters(in: .whitespaces)] = pair[1].trimmingCharacters(in: .whitespaces)
            }
        }
        return out
    }

    /// `application/x-www-form-urlencoded`: `+` is a space, then percent-decoding.
    static func parseForm(_ body: [UInt8]) -> [String: String] {
        var out: [String: String] = [:]
        for part in String(decoding: body, as: UTF8.self).split(separator: "&") {
            let pair = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String? { API.percentDecoded(String(s).replacingOccurrences(of: "+", with: " ")) }
            guard let key = decode(pair[0]) else { continue }
            out[key] = pair.count > 1 ? decode(pair[1]) ?? "" : ""
        }
        return out
    }
}
