import Audit
import FeatureStore
import Foundation
import VeilCore
import HTTPTypes
import Hummingbird
import Logging
import Prometheus
import Policy

/// One route: method, path, the single action that authorizes it (nil only for the public probes) and its handler.
public struct RouteSpec: Sendable {
    public let method: HTTPRequest.Method
    public let path: String
    public let action: Action?
    /// Authorizes (when the route has an action) and handles.
    let respond: Handler

    /// A public probe: no principal, not audited.
    static func probe(_ method: HTTPRequest.Method, _ path: String, _ handler: @escaping Handler) -> RouteSpec {
        RouteSpec(method: method, path: path, action: nil, respond: handler)
    }

    /// A route that `action` authorizes; its handler receives the admitted principal.
    static func route(_ method: HTTPRequest.Method, _ path: String, _ action: Action, _ handler: @escaping AuthorizedHandler) -> RouteSpec {
        RouteSpec(
            method: method, path: path, action: action,
            respond: { service, request, context in
                let principal = try await service.authorize(request, action: action, note: context.audit, clientAddress: context.clientAddress)
                guard principal.isBrowser, let origin = request.headers[.origin] else {
                    return try await handler(service, request, context, principal)
                }
                // The page's script may read the answer (and the error) only if the answer names its origin.
                do {
                    var response = try await handler(service, request, context, principal)
                    response.headers[.accessControlAllowOrigin] = origin
                    response.headers[.vary] = "Origin"
                    return response
                } catch {
                    var mapped = GatewayError.from(error)
                    mapped.headers[.accessControlAllowOrigin] = origin
                    mapped.headers[.vary] = "Origin"
                    throw mapped
                }
            })
    }
}

/// Every route Veil serves, with its action: the one place authorization is decided.
public enum RouteTable {
    public static let routes: [RouteSpec] = API.groups.flatMap { $0.routes }

    /// Public probes that read no personal data and are not audited.
    public static let publicPaths: Set<String> = Set(routes.filter { $0.action == nil }.map(\.path))
}

/// Builds the router: the edge middleware, then every route of ``RouteTable`` with its handler.
public enum GatewayRouter {
    /// - Parameter secureCookies: the console's cookies carry `Secure` (the server speaks TLS).
    public static func build(service: VeilService, secureCookies: Bool = false) -> Router<VeilRequestContext> {
        let router = Router(context: VeilRequestContext.self)
        router.add(middleware: EdgeMiddleware(service: service, metrics: EdgeMetrics(registry: service.metrics.registry)))
        Console.register(on: router, service: service, secureCookies: secureCookies)
        for spec in RouteTable.routes {
            router.on(RouterPath(spec.path), method: spec.method) { request, context -> Response in
                context.audit.update { $0.action = spec.action?.rawValue ?? "public" }
                return try await spec.respond(service, request, context)
            }
        }
        // A known path asked with a method it does not serve: 405 naming those it does (the router alone says 404).
        for (path, specs) in Dictionary(grouping: RouteTable.routes, by: \.path) {
            let served = specs.map(\.method.rawValue)
            for method in [HTTPRequest.Method.get, .post, .put, .delete, .patch] where !served.contains(method.rawValue) {
                router.on(RouterPath(path), method: method) { request, _ -> Response in
                    var error = GatewayError(
                        .methodNotAllowed, "method_not_allowed",
                        "\(request.method.rawValue) is not served on this path; use \(served.joined(separator: " or "))")
                    error.headers[.allow] = served.joined(separator: ", ")
                    throw error
                }
            }
        }
        return router
    }
}

extension VeilService {
    /// Authenticates the key and checks the principal's role against the policy. A browser key (which a beacon
    /// cannot put in a header) may come as `key` in the query; it is accepted only from one of its origins and is
    /// rate-limited per client address.
    func authorize(_ request: Request, action: Action, note: AuditNote, clientAddress: String?) async throws -> Principal {
        // One Authorization field, read without joining repeated fields (HTTPFields' subscript allocates).
        var fields = 0
        var value: String?
        for field in request.headers where field.name == .authorization {
            fields += 1
            value = field.value
        }
        let key: String
        let query = fields == 0 ? request.uri.queryParameters : [:]
        if fields == 0, let inQuery = query["key"] {
            key = String(inQuery)
        } else {
            guard fields == 1, let header = value, header.hasPrefix("Bearer ") else {
                note.update { $0.reason = fields > 1 ? "more than one Authorization header" : "missing API key" }
                throw GatewayError.unauthenticated
            }
            key = String(header.dropFirst("Bearer ".count))
        }
        guard var principal = try await principals.authenticate(key: key) else {
            note.update { $0.reason = "unknown or revoked API key" }
            throw GatewayError.unauthenticated
        }
        var limited = principal.name
        if principal.isBrowser {
            // Checked before the principal is named in the note: refusals of a copied key from other pages are
            // recorded like refusals without a key, a few one by one and the rest in one aggregate entry.
            guard let origin = request.headers[.origin], principal.origins.contains(origin.lowercased()) else {
                note.update { $0.reason = "browser key sent from an origin not configured for it" }
                throw GatewayError(
                    .forbidden, "origin_not_allowed",
                    "this browser key is not accepted from this page's origin; add the origin to the key (veil principals add --origin)")
            }
            principal.subjectProof = query["proof"].map(String.init)
            limited += "|" + clientFingerprint(clientAddress)
        } else if fields == 0 {
            // Named, so the operator learns which key to replace (whoever holds it could flood anyway).
            note.update {
                $0.actor = principal.name; $0.role = principal.role; $0.reason = "secret API key sent in the URL: replace it"
            }
            throw GatewayError(
                .unauthorized, "unauthenticated",
                "only a browser key may be sent in the URL; send this key in the Authorization header, and replace it, since URLs are logged")
        }
        note.update {
            $0.actor = principal.name; $0.role = principal.role
        }
        try enforceRateLimit(bucket: limited, role: principal.role, note: note)
        guard policy.allows(role: principal.role, action) else {
            note.update { $0.reason = "role lacks \(action.rawValue)" }
            throw GatewayError.forbidden(principal.role, action.rawValue)
        }
        return principal
    }
}

/// Writes one audit entry per /v1 request (allowed, denied or failed), maps every error to the one error shape,
/// and tags each response with its request id.
struct EdgeMiddleware: RouterMiddleware {
    typealias Context = VeilRequestContext
    let service: VeilService
    let metrics: EdgeMetrics
    static let auditEntryHeader = HTTPField.Name("Veil-Audit-Entry")!

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        metrics.requests.increment()
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            let mapped = GatewayError.from(error)
            if mapped.code == GatewayError.storageFull.code { service.storage.noteFull() }
            if mapped.status.code >= 500 {
                // A core error is logged as the edge answered it (status, code, message), as before the core had errors of its own.
                let reason = error is CoreError ? mapped.description : loggableReason(error)
                service.logger.error("request failed", metadata: ["request_id": "\(context.requestID)", "error": "\(reason)"])
            }
            response = mapped.response(requestID: context.requestID)
        }
        // By the route the router matched: `/console/` or `/health/live/` reach the same handlers as without the slash.
        let route = context.endpointPath ?? request.uri.path
        var audited = !RouteTable.publicPaths.contains(route) && !Console.publicPaths.contains(route)
        let note = context.audit.snapshot
        if audited, note.actor == AuditNote.anonymous || (note.role == Role.browser && response.status.code >= 400) {
            // Answered without an authenticated principal (no or a bad key, an unknown path, a wrong method, a console
            // page without a session), or refused to a browser key, which anyone can copy from a page: a few per
            // client and window get entries of their own, the rest one aggregate entry, and past the limit a 429 (a
            // flood must leave a bounded record, not fill the audit disk).
            let client = service.clientFingerprint(context.clientAddress)
            let seconds = Int64(service.now().timeIntervalSince1970)
            switch service.refusals.record(client: client, at: seconds) {
            case .audit: context.audit.update { $0.reason += $0.reason.isEmpty ? "client \(client)" : "; client \(client)" }
            case .counted:
                audited = false
            case .limited where response.status.code >= 500:
                // The server's own failure (the database did not answer while the key was checked, say) keeps its
                // answer, with its Retry-After: it is counted, so a flood during an outage stays a bounded record, but
                // a client is not told it sent too many requests.
                audited = false
            case .limited(let wait):
                audited = false
                var error = GatewayError(
                    .tooManyRequests, "rate_limited", "too many requests without a valid key from this client; retry after the Retry-After seconds")
                error.headers[.retryAfter] = String(wait)
                response = error.response(requestID: context.requestID)
            }
            // A counted refusal has no entry of its own: it names the entry its client's window is recorded under.
            if !audited, let entry = await service.refusalEntry(client: client, at: seconds) {
                response.headers[Self.auditEntryHeader] = String(entry)
            }
        }
        if audited {
            let note = context.audit.snapshot
            let code = response.status.code
            // Second line of defence for a log that can never be erased: a purpose outside the policy's closed set
            // becomes a marker, and no field outgrows a bound, whatever a handler put in the note.
            let purpose = note.purpose.map { service.policy.purposes[$0] == nil ? AuditNote.unrecognized : $0 }
            func bounded(_ s: String) -> String {
                s.utf8.count <= AuditNote.maxFieldBytes ? s : String(decoding: s.utf8.prefix(AuditNote.maxFieldBytes), as: UTF8.self)
            }
            let outcome: AuditOutcome = code < 400 ? .allowed : (code == 401 || code == 403) ? .denied : code < 500 ? .rejected : .error
            let record = AuditRecord(
                actor: note.actor, role: note.role, action: note.action,
                resource: "\(request.method.rawValue) \(context.endpointPath ?? "unmatched")",
                subjectToken: note.subjectToken, purpose: purpose, outcome: outcome,
                reason: bounded(note.reason.isEmpty ? "status \(code)" : "status \(code): \(note.reason)"), requestID: context.requestID)
            do {
                let appended = ContinuousClock.now
                let entry = try await service.audit.append(record)
                metrics.auditWait.record(.now - appended)
                // The sequence number of this very access's entry: a client can later ask for its proof.
                response.headers[Self.auditEntryHeader] = String(entry.sequence)
            } catch {
                // The entry must be durable before the request returns; if it cannot be, the request fails.
                service.logger.error("audit append failed", metadata: ["request_id": "\(context.requestID)", "error": "\(loggableReason(error))"])
                if isDiskFull(error) {
                    service.storage.noteFull()
                    response = GatewayError.storageFull.response(requestID: context.requestID)
                } else {
                    response = GatewayError.internalError.response(requestID: context.requestID)
                }
            }
        }
        response.headers[HTTPField.Name("X-Request-Id")!] = context.requestID
        metrics.duration(path: context.endpointPath, method: request.method).record(.now - start)
        return response
    }
}
