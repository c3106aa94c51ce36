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

typealias Handler = @Sendable (VeilService, Request, VeilRequestContext) async throws -> Response
/// A handler of an authorized route: it gets the principal the route's action admitted.
typealias AuthorizedHandler = @Sendable (VeilService, Request, VeilRequestContext, Principal) async throws -> Response

/// The route handlers: decode, call the service, encode. No privacy logic lives here.
enum Handlers {
    /// Every route, each declared once with the action that authorizes it and its handler: the router is built from
    /// this table, and the OpenAPI, access-matrix and metrics tests read it.
    static let routes: [RouteSpec] = [
        .probe(.get, "/health/live") { _, _, _ in try json(["status": "ok"]) },
        .probe(.get, "/health/ready", ready),
        .probe(.get, "/metrics") { service, _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(bytes: service.metrics.render(audit: service.audit.stats))))
        },
        .probe(.get, "/openapi.yaml") { _, _, _ in
            Response(status: .ok, headers: [.contentType: "application/yaml"], body: .init(byteBuffer: ByteBuffer(bytes: OpenAPI.document)))
        },
        .probe(.get, TrackingScript.path) { _, _, _ in script(cache: "public, max-age=300") },
        .probe(.get, TrackingScript.versionedPath) { _, _, _ in script(cache: "public, max-age=31536000, immutable") },
        .route(.post, "/v1/consents", .consentWrite) { service, request, context, principal in
            let body = try await decode(ConsentService.ConsentRequest.self, request, context)
            let gpc = request.headers[HTTPField.Name("Sec-GPC")!] == "1"
            return try json(await service.consent.record(body, principal: principal, gpcHeader: gpc, note: context.audit), status: .created)
        },
        .route(.get, "/v1/consents/{subject}", .consentRead) { service, _, context, principal in
            try await jsonObject(service.consent.state(subject: try subject(context), principal: principal, note: context.audit))
        },
        .route(.get, "/v1/consents/{subject}/history", .consentRead) { service, _, context, principal in
            try await json(["events": service.consent.history(subject: try subject(context), principal: principal, note: context.audit)])
        },
        .route(.post, "/v1/events", .eventsWrite, ingestEvents),
        .route(.post, "/v1/feedback", .eventsWrite, ingestEvents),
        .route(.put, "/v1/items", .catalogWrite) { service, request, context, _ in
            struct Items: Decodable { var items: [CatalogItem] }
            let body = try await decode(Items.self, request, context)
            try await service.intake.upsertItems(body.items)
            return try json(["stored": body.items.count])
        },
        .route(.get, "/v1/recommendations/{subject}", .recommendationsRead) { service, request, context, principal in
            var query = Recommendations.RecommendationQuery()
            let params = request.uri.queryParameters
            if let k = params["k"] {
                guard let value = Int(String(k)), (1...100).contains(value) else {
                    throw GatewayError.badRequest("k must be a whole number from 1 to 100")
                }
                query.k = value
            }
            query.categories = list(params["category"])
            query.exclude = Set(list(params["exclude"]))
            query.session = list(params["session"])
            guard query.session.count <= 50, query.exclude.count <= 500, query.categories.count <= 20 else {
                throw GatewayError.unprocessable("too many values: at most 50 in session, 500 in exclude and 20 in category")
            }
            let body = try await service.recommendations.recommend(
                subject: try subject(context), query: query, principal: principal,
                requestID: context.requestID, note: context.audit)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
        },
        .route(.post, "/v1/subjects/{subject}/erase", .subjectsErase) { service, _, context, principal in
            try jsonObject(await service.rights.erase(subject: try subject(context), principal: principal, note: context.audit))
        },
        .route(.get, "/v1/subjects/{subject}/export", .subjectsExport) { service, request, context, principal in
            let export = try await service.rights.export(subject: try subject(context), principal: principal, note: context.audit)
            return try sealedIfAsked(try encoder.encode(export), request, service)
        },
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
                    guard let v = Int(String($0)), (1...1000).contains(v) else { throw GatewayError.badRequest("limit must be 1 to 1000") }; return v
                } ?? 100
            let query = q
            let entries = try await offThePool { try service.auditIndex.query(query) }
            struct Page: Encodable { var entries: [AuditEntry]; var next_cursor: Int64? }
            return try json(Page(entries: entries, next_cursor: entries.count == q.limit ? entries.last?.sequence : nil))
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
        .route(.get, "/v1/audit/checkpoint", .auditHeads) { service, _, _, _ in
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
            return try json(await offThePool { try AuditReader(store: service.audit.store).consistencyProof(from: from, to: to) })
        },
        .route(.get, "/v1/audit/entries/{seq}/proof", .auditRead) { service, request, context, _ in
            guard let seq = context.parameters.get("seq").flatMap({ Int64($0) }), seq >= 1 else {
                throw GatewayError.badRequest("the entry's sequence number must be a positive integer")
            }
            let size = try request.uri.queryParameters["tree_size"].map { value in
                guard let size = Int64(String(value)) else { throw GatewayError.badRequest("tree_size must be a positive integer") }
                return size
            }
            let reader = AuditReader(store: service.audit.store)
            // A proof against the newest head for an entry signed by none yet: sign one now (at most one a second),
            // rather than make the caller wait for the next.
            if size == nil, seq > (try reader.newestCheckpoint()?.size ?? 0), seq <= service.audit.count {
                let head = try await service.audit.checkpoint(minimumInterval: .seconds(1))
                if (head?.size ?? 0) < seq {
                    var error = GatewayError(
                        .serviceUnavailable, "head_pending", "entry \(seq) is not yet under a signed head; retry after the Retry-After seconds")
                    error.headers[.retryAfter] = "1"
                    throw error
                }
            }
            return try json(await offThePool { try reader.inclusionProof(sequence: seq, treeSize: size) })
        },
        .route(.get, "/v1/audit/export", .auditExport) { service, request, _, _ in
            try await service.audit.checkpoint()
            let lines = try await offThePool { try AuditReader(store: service.audit.store).exportJSONLines() }
            if request.uri.queryParameters["recipient"] != nil { return try sealedIfAsked(Data(lines), request, service) }
            return Response(status: .ok, headers: [.contentType: "application/x-ndjson"], body: .init(byteBuffer: ByteBuffer(bytes: lines)))
        },
        .route(.post, "/v1/model/train", .policyReload) { service, _, _, _ in
            let model = try await service.training.trainOffThePool()
            return try json(["model_version": model.version, "users": "\(model.users)", "items": "\(model.items.count)"])
        },
        .route(.get, "/v1/model/provenance", .auditRead) { service, request, context, principal in
            let subject = request.uri.queryParameters["subject"].map(String.init)
            return try await jsonObject(service.training.provenance(subject: subject, principal: principal, note: context.audit))
        },
        .route(.post, "/v1/keys/rotate", .keysRotate) { service, _, context, _ in
            let (version, rewrapped) = try await service.rotateAndRewrap()
            context.audit.update { $0.reason = "master key v\(version) added; \(rewrapped) subject keys re-wrapped" }
            return try jsonObject(["master_version": Int(version), "rewrapped": rewrapped])
        },
        .route(.delete, "/v1/principals/{name}", .principalsWrite) { service, _, context, principal in
            guard let raw = context.parameters.get("name"), let name = percentDecoded(raw) else {
                throw GatewayError.badRequest("principal name is missing or badly percent-encoded")
            }
            // In force before this returns: the server's key cache forgets the principal once the revocation commits.
            try await service.principals.revoke(name: name)
            service.consoleSessions.drop(principal: name)
            // A known principal's name (a closed set of the operator's own), so the record says whom.
            context.audit.update { $0.reason = "principal '\(name)' revoked" }
            return try jsonObject(["revoked": name])
        },
    ]

    /// `POST /v1/events` and `POST /v1/feedback` (feedback is events about what was shown).
    static let ingestEvents: AuthorizedHandler = { service, request, context, principal in
        let body = try await collect(request, context)
        let gpc = request.headers[HTTPField.Name("Sec-GPC")!] == "1"
        let result = try await service.intake.ingest(body: body, principal: principal, gpcHeader: gpc, note: context.audit)
        if result.accepted + result.duplicates == 0 && !result.rejected.isEmpty {
            // Every event was refused: a 4xx in the one error shape, still naming each event's reason.
            let rejected = result.rejected.map { ["index": $0.index, "reason": $0.reason] as [String: Any] }
            return try jsonObject(
                [
                    "error": [
                        "code": "unprocessable", "message": "every event of the batch was rejected; see 'rejected'",
                        "request_id": context.requestID,
                    ],
                    "accepted": 0, "duplicates": 0, "anonymized": 0, "rejected": rejected,
                ], status: .unprocessableContent)
        }
        return try json(result)
    }

    /// Ready when the database answers, its disks have room and no source crosses a data-quality threshold.
    static let ready: Handler = { service, _, _ in
        guard await service.databaseReachable() else {
            throw GatewayError(.serviceUnavailable, "not_ready", "the database does not answer")
        }
        guard service.storage.writable() else { throw GatewayError.storageFull }
        guard let quality = await service.dataQuality.watch(force: true) else {
            throw GatewayError(.serviceUnavailable, "not_ready", "data quality could not be read")
        }
        let failing = quality.sources.filter { !$0.problems.isEmpty }.count
        guard failing == 0 else {
            throw GatewayError(
                .serviceUnavailable, "not_ready",
                "data quality: \(failing) source(s) cross a threshold; see `veil quality` or veil_source_healthy on /metrics")
        }
        let body: [String: String] = [
            "database": "ok", "data_quality": "ok", "model": service.models.model?.version ?? "none", "policy": service.policy.version,
        ]
        return try json(body)
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        e.dateEncodingStrategy = .iso8601
        return e
    }()

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }

    static func jsonObject(_ value: [String: Any], status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func collect(_ request: Request, _ context: VeilRequestContext) async throws -> [UInt8] {
        var request = request
        do {
            let buffer = try await request.collectBody(upTo: context.maxUploadSize)
            return Array(buffer.readableBytesView)
        } catch {
            throw GatewayError.tooLarge
        }
    }

    /// The tracking script; any page may load it (`crossorigin="anonymous"` with `integrity` needs the CORS header).
    static func script(cache: String) -> Response {
        Response(
            status: .ok,
            headers: [
                .contentType: "text/javascript; charset=utf-8", .cacheControl: cache, .accessControlAllowOrigin: "*",
                HTTPField.Name("X-Content-Type-Options")!: "nosniff",
            ],
            body: .init(byteBuffer: ByteBuffer(bytes: TrackingScript.bytes)))
    }

    static func decode<T: Decodable>(_ type: T.Type, _ request: Request, _ context: VeilRequestContext) async throws -> T {
        let body = try await collect(request, context)
        let decoder = JSONDecoder()
        // RFC 3339 times, with or without fractional seconds (`.iso8601` alone refuses those).
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            guard let seconds = Clean.parseISO8601(text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not an ISO 8601 time"))
            }
            return Date(timeIntervalSince1970: Double(seconds))
        }
        do {
            return try decoder.decode(T.self, from: Data(body))
        } catch let DecodingError.keyNotFound(key, _) {
            throw GatewayError.badRequest("missing field '\(key.stringValue)'")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw GatewayError.badRequest("wrong type at '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))'")
        } catch let DecodingError.valueNotFound(_, ctx) {
            throw GatewayError.badRequest("missing value at '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))'")
        } catch {
            throw GatewayError.badRequest("body is not valid JSON for this route")
        }
    }

    static func subject(_ context: VeilRequestContext) throws -> String {
        guard let raw = context.parameters.get("subject"), let subject = percentDecoded(raw) else {
            throw GatewayError.badRequest("subject is missing or badly percent-encoded")
        }
        return subject
    }

    /// `s` with %XX escapes decoded; nil when an escape is malformed or the result is not UTF-8.
    /// (Foundation's `removingPercentEncoding` cost 3% of a cached recommendation request.)
    static func percentDecoded(_ s: String) -> String? {
        let utf8 = s.utf8
        guard utf8.contains(UInt8(ascii: "%")) else { return s }
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count)
        var i = utf8.startIndex
        while i != utf8.endIndex {
            let c = utf8[i]
            if c == UInt8(ascii: "%") {
                let a = utf8.index(after: i)
                guard a != utf8.endIndex, let hi = hex(utf8[a]) else { return nil }
                let b = utf8.index(after: a)
                guard b != utf8.endIndex, let lo = hex(utf8[b]) else { return nil }
                out.append(hi << 4 | lo)
                i = utf8.index(after: b)
            } else {
                out.append(c)
                i = utf8.index(after: i)
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    static func list(_ value: Substring?) -> [String] {
        guard let value else { return [] }
        return value.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    static func millis(_ s: String, _ name: String) throws -> Int64 {
        if let n = Int64(s) {
            guard n >= 0 else { throw GatewayError.badRequest("\(name) must be ISO 8601 or epoch milliseconds (0 or more)") }
            return n
        }
        // Epoch milliseconds count from 1970 (the contract says 0 or more); an ISO 8601 time may name any year.
        guard let t = AuditTime.millis(s, endOfDay: false) else { throw GatewayError.badRequest("\(name) must be ISO 8601 or epoch milliseconds") }
        return t
    }

    /// With `?recipient=<hex X25519 public key>`, the body is sealed to that key (crypto_box_seal) and sent base64.
    static func sealedIfAsked(_ data: Data, _ request: Request, _ service: VeilService) throws -> Response {
        guard let hex = request.uri.queryParameters["recipient"] else {
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        guard let key = RecipientKey(hex: String(hex)) else {
            throw GatewayError.badRequest("recipient must be a 32-byte X25519 public key in hex")
        }
        return try json(["sealed": try service.seal(data, to: key).base64EncodedString(), "algorithm": "crypto_box_seal"])
    }
}
