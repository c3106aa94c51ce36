import Persistence

/// The one error type of the core: what went wrong in a use case, in terms the edge maps to a status once
/// (``Kind``), a stable machine-readable `code` and a message for the caller. Messages never hold keys, raw subject
/// ids or tokens.
public struct CoreError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The request is malformed (a required field is missing, a value has the wrong type).
        case invalid
        /// The request is well-formed but cannot be done as asked (an unknown purpose, a value out of range).
        case unprocessable
        /// The caller may not do this with these credentials.
        case forbidden
        case notFound
        case conflict
        case tooLarge
        /// Too many requests; retry after ``CoreError/retryAfter`` seconds.
        case rateLimited
        /// Not possible right now; retry after ``CoreError/retryAfter`` seconds when set.
        case unavailable
        case `internal`
    }

    public var kind: Kind
    public var code: String
    public var message: String
    /// Seconds after which a retry may succeed.
    public var retryAfter: Int?

    public init(_ kind: Kind, _ code: String, _ message: String, retryAfter: Int? = nil) {
        self.kind = kind
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
    }

    public var description: String { "\(code): \(message)" }

    static func invalid(_ message: String) -> CoreError { .init(.invalid, "bad_request", message) }
    static func unprocessable(_ message: String) -> CoreError { .init(.unprocessable, "unprocessable", message) }
    static let tooLarge = CoreError(.tooLarge, "payload_too_large", "request body exceeds 1 MiB")
    static let `internal` = CoreError(.internal, "internal", "internal error; the request id identifies it in the server log")
    static var erasureNotScrubbed: CoreError {
        CoreError(
            .unavailable, "erasure_incomplete",
            "the subject's data is erased, but a long-running read still keeps old database pages in the write-ahead log; they are removed automatically once it ends: repeat the request to confirm",
            retryAfter: 1)
    }
}

/// An error whose description is safe for the server log (no values, ids or tokens).
public protocol LoggableError: Error {
    var loggableReason: String { get }
}

extension CoreError: LoggableError {
    public var loggableReason: String { description }
}

/// What went wrong, for the server log: a storage backend's codes and messages (which name tables and columns, never
/// values), errors that say they are safe as they are, else only the error's type, since other errors' descriptions
/// may quote the input that caused them.
public func loggableReason(_ error: any Error) -> String {
    switch error {
    case let error as any BackendError: error.loggableReason
    case let error as any LoggableError: error.loggableReason
    default: "\(type(of: error))"
    }
}
