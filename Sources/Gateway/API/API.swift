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

/// The routes of one area of the API.
protocol RouteGroup {
    static var routes: [RouteSpec] { get }
}

/// The API's routes, one ``RouteGroup`` per area (each route declared once: the router is built from them, and the
/// OpenAPI, access-matrix and metrics tests read them), and what their handlers share: decode, encode, parameters.
/// No privacy logic lives here.
enum API {
    static var groups: [any RouteGroup.Type] {
        [
            ProbeRoutes.self, ConsentRoutes.self, IngestRoutes.self, RecommendationRoutes.self, SubjectRoutes.self, AuditRoutes.self,
            ModelRoutes.self, OperatorRoutes.self,
        ]
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
    /// (Foundation's `removingPercentEncoding` showed in the cached recommendation route's profile.)
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
