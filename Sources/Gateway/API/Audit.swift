import Audit
import FeatureStore
import Foundation
import Serving
import VeilCore
import HTTPTypes
import Ingestion
import Hummingbird
import Logging
import Prometheus
import Policy

extension API {
    /// The audit log: queries, verification, signed heads, proofs and export.
    enum AuditRoutes: RouteGroup {
        static let routes: [RouteSpec] = [
            .route(.get, "/v1/audit", .auditRead) { service, request, context, principal in
                let p = request.uri.queryParameters
                var q = AuditQuery()
                q.actor = p["actor"].map(String.init)
                q.action = p["action"].map(String.init)
                q.outcome = try p["outcome"].map { value in
                    guard let outcome = AuditOutcome(rawValue: String(value)) else {
                        throw GatewayError.badRequest("outcome must be one of: \(AuditOutcome.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    return outcome
                }
                if let s = p["subject"] {
                    q.subjectToken = try await service.auditToken(for: String(s), principal: principal)
                }
                // A lookup of one person's entries is itself an access to that person: its entry names whom it searched.
                if let searched = q.subjectToken { context.audit.update { $0.subjectToken = searched } }
                q.from = try p["from"].map { try millis(String($0), "from") }
                q.to = try p["to"].map { try millis(String($0), "to") }
                q.after =
                    try p["cursor"].map {
                        guard let v = Int64(String($0)), v >= 0 else { throw GatewayError.badRequest("cursor must be a sequence number") }; return v
                    } ?? 0
                q.limit =
                    try p["limit"].map {
                        guard let v = Int(String($0)), (1...1000).contains(v) else { throw GatewayError.badRequest("limit must be 1 to 1000") };
                        return v
                    } ?? 100
                let (entries, next) = try await service.queryAuditLog(q)
                struct Page: Encodable { var entries: [LoggedAuditEntry]; var next_cursor: Int64? }
                return try json(Page(entries: entries, next_cursor: next))
            },
            .route(.get, "/v1/audit/verify", .auditRead) { service, _, _, _ in
                try json(await service.verifyAuditLog())
            },
            .route(.post, "/v1/audit/verify", .auditRead) { service, request, context, _ in
                // Heads the caller kept from before (its own export, a witness's): the log must still match them.
                struct Trusted: Decodable { var trusted_heads: [String]; var verifier_key: String? }
                let body = try await decode(Trusted.self, request, context)
                guard !body.trusted_heads.isEmpty, body.trusted_heads.count <= 1000 else {
                    throw GatewayError.badRequest("trusted_heads must hold 1 to 1000 signed notes")
                }
                let verifier = try body.verifier_key.map { key in
                    do { return try NoteVerifier(verifierKey: key) } catch { throw GatewayError.unprocessable("verifier_key: \(error)") }
                }
                do {
                    return try json(await service.verifyAuditLog(trustedHeads: body.trusted_heads, verifier: verifier))
                } catch let error as AuditError where error.invalidInput {
                    throw GatewayError(.unprocessableContent, "untrusted_head", error.message)
                }
            },
            .route(.get, "/v1/audit/checkpoint", .auditHeads) { service, request, _, _ in
                if let shared = try otherLog(request, service) {
                    guard let head = try await shared.audit.newestHead(of: shared.log) else {
                        throw GatewayError(.notFound, "no_checkpoint", "log \(shared.log) has shipped no signed tree head yet")
                    }
                    return try json(head)
                }
                // Signs one over the entries so far if the newest does not cover them: a witness polling every minute
                // gets a head at most a minute old (and adds one head per poll, no more).
                guard let head = try await service.audit.checkpoint(minimumInterval: .seconds(1)) else {
                    throw GatewayError(.notFound, "no_checkpoint", "the log has signed no tree head yet")
                }
                return try json(head)
            },
            .route(.get, "/v1/audit/consistency", .auditHeads) { service, request, _, _ in
                let p = request.uri.queryParameters
                guard let from = p["from"].flatMap({ Int64(String($0)) }) else {
                    throw GatewayError.badRequest("from must be a tree size (a positive integer)")
                }
                let to = try p["to"].map { value in
                    guard let to = Int64(String(value)) else { throw GatewayError.badRequest("to must be a tree size (a positive integer)") }
                    return to
                }
                if let shared = try otherLog(request, service) {
                    do {
                        return try json(await shared.audit.consistencyProof(of: shared.log, from: from, to: to))
                    } catch let error as SharedAudit.ProofTooLarge {
                        throw GatewayError(.unprocessableContent, "proof_too_large", error.description)
                    }
                }
                return try json(await offThePool { try service.audit.consistencyProof(from: from, to: to) })
            },
            .route(.get, "/v1/audit/entries/{seq}/proof", .auditRead) { service, request, context, _ in
                guard let seq = context.parameters.get("seq").flatMap({ Int64($0) }), seq >= 1 else {
                    throw GatewayError.badRequest("the entry's sequence number must be a positive integer")
                }
                let size = try request.uri.queryParameters["tree_size"].map { value in
                    guard let size = Int64(String(value)) else { throw GatewayError.badRequest("tree_size must be a positive integer") }
                    return size
                }
                // A proof against the newest head for an entry signed by none yet: sign one now (at most one a second),
                // rather than make the caller wait for the next.
                if size == nil, seq > (try service.audit.newestCheckpoint()?.size ?? 0), seq <= service.audit.count {
                    let head = try await service.audit.checkpoint(minimumInterval: .seconds(1))
                    if (head?.size ?? 0) < seq {
                        var error = GatewayError(
                            .serviceUnavailable, "head_pending", "entry \(seq) is not yet under a signed head; retry after the Retry-After seconds")
                        error.headers[.retryAfter] = "1"
                        throw error
                    }
                }
                return try json(await offThePool { try service.audit.inclusionProof(sequence: seq, treeSize: size) })
            },
            .route(.get, "/v1/audit/export", .auditExport) { service, request, _, _ in
                try await service.audit.checkpoint()
                let lines = try await offThePool { try service.audit.exportJSONLines() }
                if request.uri.queryParameters["recipient"] != nil { return try sealedIfAsked(Data(lines), request, service) }
                return Response(status: .ok, headers: [.contentType: "application/x-ndjson"], body: .init(byteBuffer: ByteBuffer(bytes: lines)))
            },
        ]
    }

    /// `?log=NAME` naming another gateway's log on a shared database: its copy there answers (a witness that reaches
    /// the gateways through a load balancer follows each log by name). This gateway's own name, or none, is its file.
    static func otherLog(_ request: Request, _ service: VeilService) throws -> (audit: SharedAudit, log: String)? {
        guard let name = request.uri.queryParameters["log"].map(String.init) else { return nil }
        guard let shared = service.sharedAudit else {
            guard name == service.auditLogName else {
                throw GatewayError(.notFound, "no_such_log", "this gateway keeps no log named \(name) and shares no database with others")
            }
            return nil
        }
        guard HeadSigner.isValidLogName(name) else { throw GatewayError.badRequest("log must be 1 to 32 lower-case letters, digits and '-'") }
        return name == shared.log ? nil : (shared, name)
    }
}
