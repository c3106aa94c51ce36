import Foundation
import Policy
import Audit
import Synchronization
import Vault

/// How requests answered without an authenticated principal (no or a bad key, an unknown path, a wrong method) are
/// recorded and limited per client.
public struct RefusalLimits: Sendable {
    /// Refusals of one client in one window recorded as entries of their own (durable before the response).
    public var individuallyAudited = 20
    /// Refusals of one client in one window answered at all; past it, 429 with `Retry-After`.
    public var answered = 600
    /// Refusals of all clients in one window recorded as entries of their own; past it every client's are counted
    /// only (a flood from many addresses must leave a bounded record too).
    public var individuallyAuditedInAll = 1_000
    /// The window, in seconds.
    public var window: Int64 = 60

    public init() {}
}

/// Requests answered without an authenticated principal, per client and window. A flood of them
/// must not fill the disk with one durable audit entry each, and must still be visible to a compliance officer:
/// the first few of each client and window are entries of their own, the rest are counted and written as one
/// aggregate entry per client and window when the window ends (``closed(before:)``) or at shutdown (``drain()``).
/// Clients are keyed fingerprints of the peer address, never the address itself.
public final class RefusalLog: Sendable {
    struct Window: Sendable, Equatable {
        var start: Int64
        var count = 0
        /// Of `count`, those recorded as entries of their own.
        var audited = 0
        /// Of `count`, those answered 429 instead of 401.
        var limited = 0
        /// The entry that the window's counted refusals name in their `Veil-Audit-Entry` header (written at the first
        /// of them); the closing aggregate entry refers back to it.
        var opening: Int64?
    }
    public enum Verdict: Equatable, Sendable {
        /// Record this refusal as an entry of its own.
        case audit
        /// Counted into the window's aggregate entry.
        case counted
        /// Over the limit: answer 429, retry after this many seconds.
        case limited(retryAfter: Int64)
    }
    let limits: RefusalLimits
    private let windows = Mutex<[String: Window]>([:])
    /// Individually audited refusals of all clients in the current window: (window start, count).
    private let total = Mutex<(start: Int64, audited: Int)>((0, 0))
    /// Clients tracked at once; past it every open window is closed early (their counts are kept), so a flood from
    /// many addresses costs bounded memory and no scan per request.
    static let maxClients = 20_000
    private let overflow = Mutex<[(client: String, window: Window)]>([])

    init(limits: RefusalLimits) { self.limits = limits }

    public func record(client: String, at seconds: Int64) -> Verdict {
        let limits = self.limits
        let start = seconds - seconds % max(1, limits.window)
        return windows.withLock { all -> Verdict in
            var w = all[client] ?? Window(start: start)
            if w.start != start {
                overflow.withLock { $0.append((client, w)) }
                w = Window(start: start)
            }
            if all[client] == nil, all.count >= Self.maxClients {
                let closing = all.map { (client: $0.key, window: $0.value) }
                all.removeAll(keepingCapacity: true)
                overflow.withLock { $0.append(contentsOf: closing) }
            }
            w.count += 1
            let verdict: Verdict
            if w.count > limits.answered {
                w.limited += 1
                verdict = .limited(retryAfter: max(1, start + limits.window - seconds))
            } else if w.count <= limits.individuallyAudited, takeGlobalSlot(start: start) {
                w.audited += 1
                verdict = .audit
            } else {
                verdict = .counted
            }
            all[client] = w
            return verdict
        }
    }

    private func takeGlobalSlot(start: Int64) -> Bool {
        let limit = limits.individuallyAuditedInAll
        return total.withLock { t in
            if t.start != start { t = (start, 0) }
            guard t.audited < limit else { return false }
            t.audited += 1
            return true
        }
    }

    /// Opening entries written in the current window across all clients: (window start, count). Bounded like the
    /// individual entries, so a flood from many addresses cannot turn every counted refusal into a durable append.
    private let openings = Mutex<(start: Int64, written: Int)>((0, 0))

    func takeOpeningSlot(start: Int64) -> Bool {
        let limit = limits.individuallyAuditedInAll
        return openings.withLock { o in
            if o.start != start { o = (start, 0) }
            guard o.written < limit else { return false }
            o.written += 1
            return true
        }
    }

    /// The entry the client's counted refusals in the window starting at `start` name; nil before it is written.
    func opening(client: String, start: Int64) -> Int64? {
        windows.withLock { all in all[client].flatMap { $0.start == start ? $0.opening : nil } }
    }

    /// Records the window's opening entry unless one was recorded first (concurrent first refusals); returns the one
    /// that stands, which every later refusal of the window names.
    func setOpening(client: String, start: Int64, entry: Int64) -> Int64 {
        windows.withLock { all in
            guard var w = all[client], w.start == start else { return entry }
            if let first = w.opening { return first }
            w.opening = entry
            all[client] = w
            return entry
        }
    }

    /// Windows that ended before `seconds` and had refusals beyond those audited one by one.
    func closed(before seconds: Int64) -> [(client: String, window: Window)] {
        let limits = self.limits
        var done = overflow.withLock { o in
            defer { o.removeAll() }; return o
        }
        windows.withLock { all in
            for (client, w) in all where w.start + limits.window <= seconds {
                done.append((client, w))
                all[client] = nil
            }
        }
        // A window whose refusals were all audited one by one needs no aggregate; one that met the global cap may
        // have counted some below its own limit, so windows are kept whenever any refusal went uncounted.
        return done.filter { $0.window.count > $0.window.audited }
    }

    /// Every window, ended or not (at shutdown).
    func drain() -> [(client: String, window: Window)] { closed(before: .max) }
}

extension VeilService {
    /// A keyed fingerprint of a client address: the same client is recognizable across windows, the address is not.
    /// IPv6 clients are keyed by their /64: one host owns a whole /64 and could otherwise rotate through it.
    public func clientFingerprint(_ address: String?) -> String {
        guard let address else { return "unknown" }
        var client = address
        var v6 = in6_addr()
        if address.contains(":"), inet_pton(AF_INET6, address, &v6) == 1 {
            client = withUnsafeBytes(of: &v6) { Array($0.prefix(8)) }.map { String(format: "%02x", $0) }.joined() + "::/64"
        }
        return clientFingerprinter.digest(Array(client.utf8), length: 16).hexString
    }

    /// Writes one aggregate entry per client for every window that ended before `now` (or, at shutdown, all). The
    /// server calls it from its periodic bookkeeping; tests call it directly.
    public func flushRefusals(all: Bool = false) async throws {
        let windows = all ? refusals.drain() : refusals.closed(before: Int64(now().timeIntervalSince1970))
        let limits = refusals.limits
        for (client, w) in windows {
            let from = Date(timeIntervalSince1970: Double(w.start)).ISO8601Format()
            try await audit.append(
                AuditRecord(
                    actor: AuditNote.anonymous, role: Role.none, action: SystemAction.authRefused.rawValue, resource: "client \(client)",
                    outcome: .denied,
                    reason: "\(w.count) requests refused without authentication or to a browser key in the \(limits.window) s from \(from): "
                        + "\(w.audited) have entries of their own, \(w.limited) were answered 429"
                        + (w.opening.map { "; the others named entry \($0)" } ?? "")))
        }
    }

    /// The entry a refusal counted into its client's window names in its `Veil-Audit-Entry` header: one entry per
    /// client and window, written durably at the window's first counted refusal (so a flood still costs a bounded
    /// number of entries), saying that this client's further refusals are counted into the entry that closes the
    /// window. Nil if it cannot be written (a full disk) or the window's budget of such entries across all clients is
    /// spent: the refusal is then answered without the header rather than failed.
    public func refusalEntry(client: String, at seconds: Int64) async -> Int64? {
        let window = max(1, refusals.limits.window)
        let start = seconds - seconds % window
        if let entry = refusals.opening(client: client, start: start) { return entry }
        // Past the window's budget of such entries (a flood from many addresses), the refusal names none.
        guard refusals.takeOpeningSlot(start: start) else { return nil }
        let from = Date(timeIntervalSince1970: Double(start)).ISO8601Format()
        let record = AuditRecord(
            actor: AuditNote.anonymous, role: Role.none, action: SystemAction.authRefused.rawValue, resource: "client \(client)", outcome: .denied,
            reason: "from here on, the requests of this client refused without authentication or to a browser key in the \(window) s from \(from) "
                + "are counted, not recorded one by one; their number follows in an entry when the window closes")
        guard let entry = try? await audit.append(record) else { return nil }
        return refusals.setOpening(client: client, start: start, entry: entry.sequence)
    }
}
