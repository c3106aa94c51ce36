import Foundation
import VeilCore
import Hummingbird
import NIOCore
import Policy
import Synchronization

/// The per-request context: request id, client address and the audit note. The principal an authorized route admitted
/// is handed to its handler as a value (``AuthorizedHandler``), never looked up here.
public struct VeilRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let requestID: String
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
