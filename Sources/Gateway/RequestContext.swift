import Foundation
import VeilCore
import Hummingbird
import NIOCore
import Policy
import Synchronization
import Vault

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
