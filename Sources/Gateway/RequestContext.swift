import Foundation
import Hummingbird
import NIOCore
import Policy
import Synchronization
import Vault

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
    var subjectProof: String?

    /// Whether this principal's key is publishable (in web pages): see ``Role/browser``.
    public var isBrowser: Bool { role == Role.browser }
}

/// What one request did, filled by the route and written to the audit log by the middleware, exactly once.
final class AuditNote: Sendable {
    /// The actor of a request no principal was authenticated for.
    static let anonymous = "anonymous"
    struct Fields {
        var action = "none"
        var actor = AuditNote.anonymous
        var role = "none"
        var subjectToken: String?
        var purpose: String?
        var reason = ""
    }
    let fields = Mutex(Fields())
    /// Recorded instead of a value outside its closed set (a purpose the policy does not name).
    static let unrecognized = "(unrecognized)"
    /// No audit field written from a note exceeds this: entries are permanent.
    static let maxFieldBytes = 512
    func update(_ body: (inout Fields) -> Void) { fields.withLock { body(&$0) } }
    var snapshot: Fields { fields.withLock { $0 } }
}

/// The per-request context: request id, authenticated principal and the audit note.
public struct VeilRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let requestID: String
    public var principal: Principal?
    let audit = AuditNote()

    /// The peer's IP address, for limiting refusals before authentication (nil in tests without a socket).
    let clientAddress: String?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        requestID = RequestID.next()
        clientAddress = source.channel.remoteAddress?.ipAddress
    }

    /// Bodies are capped at 1 MiB.
    public var maxUploadSize: Int { 1 << 20 }
}

/// Request ids: 16 hex digits from the operating system's CSPRNG, unpredictable so that an id says nothing about
/// traffic volume. Drawn 4 KiB at a time: a random-bytes system call per request was 2% of a cached
/// recommendation request's CPU.
enum RequestID {
    private static let pool = Mutex<(bytes: [UInt8], used: Int)>(([], 0))

    static func next() -> String {
        let raw: [UInt8] = pool.withLock { pool in
            if pool.used + 8 > pool.bytes.count {
                pool.bytes = SecureRandom.bytes(4096)
                pool.used = 0
            }
            defer { pool.used += 8 }
            return Array(pool.bytes[pool.used..<pool.used + 8])
        }
        return raw.hexString
    }
}
