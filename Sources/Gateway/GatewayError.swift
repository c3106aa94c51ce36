import Foundation
import Audit
import Consent
import Hummingbird
import Ingestion
import VeilCore

/// The one error type of the HTTP edge. Every 4xx and 5xx leaves Veil in the same shape:
/// `{"error":{"code","message","request_id"}}`. Messages never hold keys, raw subject ids or stack traces.
public struct GatewayError: Error, Sendable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    public var description: String { "\(status.code) \(code): \(message)" }

    static func badRequest(_ message: String) -> GatewayError { .init(.badRequest, "bad_request", message) }
    static func unprocessable(_ message: String) -> GatewayError { .init(.unprocessableContent, "unprocessable", message) }
    static let unauthenticated = GatewayError(
        .unauthorized, "unauthenticated", "missing, unknown or revoked API key; send Authorization: Bearer <key>")
    static func forbidden(_ role: String, _ action: String) -> GatewayError {
        .init(.forbidden, "forbidden", "role '\(role)' may not perform '\(action)'")
    }
    static let notFound = GatewayError(.notFound, "not_found", "no such route")
    static let tooLarge = GatewayError(.contentTooLarge, "payload_too_large", "request body exceeds 1 MiB")
    /// The database did not answer in time (restarting, unreachable): retry shortly.
    static var databaseUnavailable: GatewayError {
        var error = GatewayError(.serviceUnavailable, "database_unavailable", "the database does not answer; retry after the Retry-After seconds")
        error.headers[.retryAfter] = "5"
        return error
    }
    static let internalError = GatewayError(.internalServerError, "internal", "internal error; the request id identifies it in the server log")

    struct Body: Encodable {
        struct Inner: Encodable {
            let code: String
            let message: String
            let request_id: String
        }
        let error: Inner
    }

    func response(requestID: String) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let data = (try? encoder.encode(Body(error: .init(code: code, message: message, request_id: requestID)))) ?? Data()
        var headers = self.headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// A full disk, for the data or for the audit log: the request could not be kept or recorded, so it is
    /// refused, and a load balancer is told to come back later (readiness is 503 meanwhile).
    static var storageFull: GatewayError {
        var error = GatewayError(.serviceUnavailable, "storage_full", "the disk holding Veil's data or audit log is full; retry later")
        error.headers[.retryAfter] = "30"
        return error
    }

    /// Maps any error to the edge's shape: ours as they are, Hummingbird's by status, a full disk to 503, anything
    /// else to 500.
    static func from(_ error: any Error) -> GatewayError {
        if let error = error as? GatewayError { return error }
        if VeilCore.isDiskFull(error) { return storageFull }
        if VeilCore.isDatabaseUnavailable(error) { return databaseUnavailable }
        if let error = error as? CoreError { return from(error) }
        // The consent ledger refuses what the request asked (an unknown purpose or notice, a malformed value) wherever
        // in a use case it is reached: always the client's to fix.
        if let error = error as? ConsentError { return GatewayError(.unprocessableContent, "unprocessable", error.message) }
        // A batch of events unusable as a whole: the client's to fix (a body over the limit, malformed JSON).
        if let error = error as? EventParser.BatchError { return error.tooLarge ? .tooLarge : .badRequest(error.reason) }
        if let error = error as? AuditProofError {
            switch error {
            case .noSuchEntry, .noSuchHead: return GatewayError(.notFound, "not_found", error.description)
            case .invalidRange: return GatewayError(.unprocessableContent, "invalid_range", error.description)
            }
        }
        if let error = error as? any HTTPResponseError {
            switch error.status.code {
            case 404: return .notFound
            case 405: return GatewayError(.methodNotAllowed, "method_not_allowed", "method not allowed on this route")
            case 413: return .tooLarge
            case 429: return GatewayError(.tooManyRequests, "rate_limited", "too many requests")
            case 400..<500: return GatewayError(error.status, "bad_request", "the request could not be processed")
            default: return .internalError
            }
        }
        // Anything else is the server's fault, by design: a VaultError in a request means a stored envelope or a key
        // file no longer opens (never the client's input), and a PolicyError cannot arise once the server runs (the
        // policy is loaded and checked at start). Logged with its loggable reason, answered as 500.
        return .internalError
    }
}

extension GatewayError {
    /// The one place a core error becomes a status.
    static func from(_ error: CoreError) -> GatewayError {
        let status: HTTPResponse.Status =
            switch error.kind {
            case .invalid: .badRequest
            case .unprocessable: .unprocessableContent
            case .forbidden: .forbidden
            case .notFound: .notFound
            case .conflict: .conflict
            case .tooLarge: .contentTooLarge
            case .rateLimited: .tooManyRequests
            case .unavailable: .serviceUnavailable
            case .internal: .internalServerError
            }
        var mapped = GatewayError(status, error.code, error.message)
        if let seconds = error.retryAfter { mapped.headers[.retryAfter] = String(seconds) }
        return mapped
    }
}

extension GatewayError: LoggableError {
    /// Its messages hold no personal data.
    public var loggableReason: String { description }
}
