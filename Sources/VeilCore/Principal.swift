import Policy
import Synchronization

/// Who is calling: resolved from the API key by the gateway, never from a header the client sets.
public struct Principal: Sendable, Equatable {
    public var name: String
    public var role: String
    /// The token namespace of this principal's app: subjects are tokenized within it.
    public var namespace: String
    /// A browser key's origins (`scheme://host[:port]`): it is accepted only from pages of these.
    public var origins: [String] = []
    /// The fingerprint of the key it authenticated with: a browser key's identity secret derives from it.
    var keyFingerprint: [UInt8] = []
    /// The shop's proof for the subject id a browser request names (`proof` in its query), if it sent one.
    public var subjectProof: String?

    /// Whether this principal's key is publishable (in web pages): see ``Role/browser``.
    public var isBrowser: Bool { role == Role.browser }
}

/// What one request did, filled by the route and written to the audit log by the middleware, exactly once.
public final class AuditNote: Sendable {
    public init() {}
    /// The actor of a request no principal was authenticated for.
    public static let anonymous = "anonymous"
    public struct Fields {
        public var action = "none"
        public var actor = AuditNote.anonymous
        public var role = "none"
        public var subjectToken: String?
        public var purpose: String?
        public var reason = ""
    }
    let fields = Mutex(Fields())
    /// Recorded instead of a value outside its closed set (a purpose the policy does not name).
    public static let unrecognized = "(unrecognized)"
    /// No audit field written from a note exceeds this: entries are permanent.
    public static let maxFieldBytes = 512
    public func update(_ body: (inout Fields) -> Void) { fields.withLock { body(&$0) } }
    public var snapshot: Fields { fields.withLock { $0 } }
}
