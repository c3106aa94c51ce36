import Foundation
import Audit
import Synchronization
import Vault

/// How refusals before authentication are recorded and limited per client.
public struct RefusalLimits: Sendable {
    /// Refusals of one client in one window recorded as entries of their own (durable before the response).
    public var individuallyAudited = 20
    /// Refusals of one client in one window answered at all; past it, 429 with `Retry-After`.
    public var answered = 600
    /// The window, in seconds.
    public var window: Int64 = 60

    public init() {}
}

/// Refusals before authentication (no key, an unknown or revoked key), per client and window. A flood of them
/// must not fill the disk with one durable audit entry each, and must still be visible to a compliance officer:
/// the first few of each client and window are entries of their own, the rest are counted and written as one
/// aggregate entry per client and window when the window ends (``closed(before:)``) or at shutdown (``drain()``).
/// Clients are keyed fingerprints of the peer address, never the address itself.
final class RefusalLog: Sendable {
    struct Window: Sendable, Equatable {
        var start: Int64
        var count = 0
        /// Of `count`, those answered 429 instead of 401.
        var limited = 0
    }
    enum Verdict: Equatable {
        /// Record this refusal as an entry of its own.
        case audit
        /// Counted into the window's aggregate entry.
        case counted
        /// Over the limit: answer 429, retry after this many seconds.
        case limited(retryAfter: Int64)
    }
    let limits: RefusalLimits
    private let windows = Mutex<[String: Window]>([:])
    /// Clients tracked at once; past it the oldest windows are closed early (their counts are kept).
    static let maxClients = 20_000
    private let overflow = Mutex<[(client: String, window: Window)]>([])

    init(limits: RefusalLimits) { self.limits = limits }

    func record(client: String, at seconds: Int64) -> Verdict {
        let limits = self.limits
        let start = seconds - seconds % max(1, limits.window)
        return windows.withLock { all -> Verdict in
            var w = all[client] ?? Window(start: start)
            if w.start != start {
                overflow.withLock { $0.append((client, w)) }
                w = Window(start: start)
            }
            if all[client] == nil, all.count >= Self.maxClients, let oldest = all.min(by: { $0.value.start < $1.value.start }) {
                all[oldest.key] = nil
                overflow.withLock { $0.append((oldest.key, oldest.value)) }
            }
            w.count += 1
            let verdict: Verdict
            if w.count > limits.answered {
                w.limited += 1
                verdict = .limited(retryAfter: max(1, start + limits.window - seconds))
            } else {
                verdict = w.count <= limits.individuallyAudited ? .audit : .counted
            }
            all[client] = w
            return verdict
        }
    }

    /// Windows that ended before `seconds` and had refusals beyond those audited one by one.
    func closed(before seconds: Int64) -> [(client: String, window: Window)] {
        let limits = self.limits
        var done = overflow.withLock { o in defer { o.removeAll() }; return o }
        windows.withLock { all in
            for (client, w) in all where w.start + limits.window <= seconds {
                done.append((client, w))
                all[client] = nil
            }
        }
        return done.filter { $0.window.count > limits.individuallyAudited }
    }

    /// Every window, ended or not (at shutdown).
    func drain() -> [(client: String, window: Window)] { closed(before: .max) }
}

extension VeilService {
    /// A keyed fingerprint of a client address: the same client is recognizable across windows, the address is not.
    func clientFingerprint(_ address: String?) -> String {
        guard let address else { return "unknown" }
        return Hash.keyed(Array(address.utf8), key: clientKey, length: 8).hexString
    }

    /// Writes one aggregate entry per client for every window that ended before `now` (or, at shutdown, all).
    func flushRefusals(all: Bool = false) async throws {
        let windows = all ? refusals.drain() : refusals.closed(before: Int64(now().timeIntervalSince1970))
        let limits = refusals.limits
        for (client, w) in windows {
            let from = Date(timeIntervalSince1970: Double(w.start)).ISO8601Format()
            try await audit.append(AuditRecord(
                actor: "anonymous", role: "none", action: "auth:refused", resource: "client \(client)", outcome: .denied,
                reason: "\(w.count) requests refused before authentication in the \(limits.window) s from \(from): the first "
                    + "\(min(w.count, limits.individuallyAudited)) have entries of their own, \(w.limited) were answered 429"))
        }
    }
}

extension VeilService {
    /// ``flushRefusals(all:)`` for tests, which cannot wait for the server's periodic bookkeeping.
    public func flushRefusalsForTests() async throws { try await flushRefusals() }
}
