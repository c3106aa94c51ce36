import Foundation
import VeilCore
import HTTPTypes
import Hummingbird
import Policy

/// Signing in and out: an API key of a role that may read the audit log is exchanged for a session.
enum ConsoleAuth {
    /// The sign-in form. Its CSRF token is a cookie of its own (there is no session yet), checked against the form.
    static let form: Console.Page = { call in
        if call.session != nil { return Console.redirect("/console/audit") }
        let token = FormToken.make()
        return Console.render(
            "signin", call.base("Sign in", ["csrf": token]),
            headers: [.setCookie: Console.cookie(Console.signinCookie, token, secure: call.secureCookies, maxAge: 600)])
    }

    static let signIn: Console.Page = { call in
        try call.checkCSRF(call.cookies[Console.signinCookie] ?? "")
        let key = call.form["key"]?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        guard let principal = try await call.service.principals.authenticate(key: key) else {
            call.context.audit.update { $0.reason = "console sign-in with an unknown or revoked API key" }
            throw ConsoleError(status: .unauthorized, title: "Sign in", message: "That key is unknown or revoked.")
        }
        try ConsoleRequest.limit(principal, service: call.service, note: call.context.audit)
        // A browser key is public: it never opens the console, whatever a policy says.
        guard !principal.isBrowser, call.service.policy.allows(role: principal.role, .auditRead) else {
            call.context.audit.update {
                $0.actor = principal.name; $0.role = principal.role; $0.reason = "console sign-in refused to role \(principal.role)"
            }
            throw ConsoleError(
                status: .forbidden, title: "Not for this key",
                message: "The console is for compliance officers and administrators; a key of role \(principal.role) cannot sign in.")
        }
        call.context.audit.update {
            $0.actor = principal.name; $0.role = principal.role; $0.reason = "console session opened"
        }
        // A new sign-in ends the session this browser had.
        if let old = call.sessionID { call.sessions.drop(old) }
        let session = call.sessions.create(principal, now: call.service.now())
        var headers = HTTPFields()
        headers.append(HTTPField(name: .setCookie, value: Console.cookie(Console.sessionCookie, session.id, secure: call.secureCookies)))
        headers.append(HTTPField(name: .setCookie, value: Console.cookie(Console.signinCookie, "", secure: call.secureCookies, maxAge: 0)))
        return Console.redirect("/console/audit", headers: headers)
    }

    static let signOut: Console.Page = { call in
        guard let session = call.session else { throw ConsoleError.signedOut }
        try call.checkCSRF(session.csrf)
        call.sessions.drop(session.id)
        call.context.audit.update {
            $0.action = SystemAction.consoleSignout.rawValue; $0.reason = "console session closed"
        }
        return Console.redirect(
            "/console/signin", headers: [.setCookie: Console.cookie(Console.sessionCookie, "", secure: call.secureCookies, maxAge: 0)])
    }
}
