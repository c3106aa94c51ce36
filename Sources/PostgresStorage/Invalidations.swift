import Dispatch
import Foundation
import Logging
import Persistence
import PostgresNIO
import Synchronization

/// Announcements between the gateways on one database: a transaction that changes what gateways hold in memory bumps
/// the database's generation and sends `NOTIFY veil_invalidations`, which PostgreSQL delivers at commit, to every
/// listener, in commit order. Every gateway listens on a connection of its own. A generation that skips one, a watch
/// that breaks, or a heartbeat that finds the generation ahead of the notifications, makes the watcher resync (the
/// gateway forgets everything it holds) instead of serving what a lost notification should have dropped.
enum Announcements {
    static let channel = "veil_invalidations"
    /// Where each watching gateway says, every second and after each announcement it applied, `<generation> <origin>`:
    /// it is alive and has applied everything up to that generation. A writer answers once every gateway alive has.
    static let ackChannel = "veil_applied"
    /// A payload longer than this is replaced by `*` (forget everything): NOTIFY takes at most 8000 bytes.
    static let maximumPayload = 7000

    /// `<generation> <origin> <item> <item> …`, an item being `s:<token>`, `f:<token>`, `u:<token>` (forgotten,
    /// to be unlearned), `m:<model version>`, `l`, `p` or `*`. Tokens are hex and versions base-36 with dashes, so no
    /// item contains a space.
    static func payload(generation: Int64, origin: String, _ invalidations: [Invalidation]) -> String {
        var items = Set<String>()
        for invalidation in invalidations {
            switch invalidation {
            case .subject(let token): items.insert("s:" + token)
            case .forgotten(let token, let unlearn): items.insert((unlearn ? "u:" : "f:") + token)
            case .links: items.insert("l")
            case .principals: items.insert("p")
            case .model(let version): items.insert("m:" + version)
            }
        }
        let text = "\(generation) \(origin) " + items.sorted().joined(separator: " ")
        return text.utf8.count <= maximumPayload ? text : "\(generation) \(origin) *"
    }

    struct Parsed: Equatable {
        var generation: Int64
        var origin: String
        /// nil: forget everything.
        var invalidations: [Invalidation]?
    }

    static func parse(_ payload: String) -> Parsed? {
        let parts = payload.split(separator: " ")
        guard parts.count >= 2, let generation = Int64(parts[0]) else { return nil }
        var invalidations: [Invalidation] = []
        for item in parts.dropFirst(2) {
            let token = String(item.dropFirst(2))
            switch item.prefix(2) {
            case "s:": invalidations.append(.subject(token: token))
            case "f:": invalidations.append(.forgotten(token: token, unlearn: false))
            case "u:": invalidations.append(.forgotten(token: token, unlearn: true))
            case "m:": invalidations.append(.model(version: token))
            default:
                switch item {
                case "l": invalidations.append(.links)
                case "p": invalidations.append(.principals)
                case "*": return Parsed(generation: generation, origin: String(parts[1]), invalidations: nil)
                default: return nil
                }
            }
        }
        return Parsed(generation: generation, origin: String(parts[1]), invalidations: invalidations)
    }
}

extension PostgresTransaction: InvalidationRepository {
    public func announce(_ invalidations: [Invalidation]) throws {
        guard !invalidations.isEmpty else { return }
        let generation = try value("UPDATE veil_generation SET value = value + 1 WHERE id = 1 RETURNING value", as: Int64.self) ?? 0
        let payload = Announcements.payload(generation: generation, origin: origin, invalidations)
        try run("SELECT pg_notify(\(Announcements.channel), \(payload))")
        announcedGeneration.withLock { $0 = generation }
    }

    public func announcementGeneration() throws -> Int64 {
        try value("SELECT value FROM veil_generation WHERE id = 1", as: Int64.self) ?? 0
    }
}

extension PostgresStore {
    public var isShared: Bool { settings.shared }

    static let trainerLock: Int64 = 0x7665_696C_0004

    /// A session advisory lock on a connection of its own, held while `body` runs: a gateway that dies mid-training
    /// drops its connection and with it the lock. Polled rather than waited for, since every connection carries the
    /// statement timeout.
    public func asSoleTrainer<T>(patience: Double, _ body: () throws -> T) throws -> T? {
        let connection = try connect()
        defer { try? connection.close().wait() }
        let deadline = Date().addingTimeInterval(patience)
        while true {
            let got = try connection.answer("SELECT pg_try_advisory_lock(\(Self.trainerLock))", logger: logger, within: self.patience)
                .rows.first?.decode(Bool.self)
            if got == true { break }
            guard Date() < deadline else { return nil }
            Thread.sleep(forTimeInterval: 0.25)
        }
        // The lock's connection is idle while the training runs (minutes): a NAT or a proxy drops idle connections, and
        // the server keeps a dropped backend, and its lock, until TCP gives up on it. A statement every 15 s keeps it
        // alive. (Should it die anyway, the publish that follows is conditional: see ``ModelRepository``.)
        let beat = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
        beat.schedule(deadline: .now() + 15, repeating: 15)
        beat.setEventHandler { [logger, patience] in _ = try? connection.answer("SELECT 1", logger: logger, within: patience) }
        beat.resume()
        defer { beat.cancel() }
        return try body()
    }

    /// Listens on a connection of its own; reports `resync` once listening (and after any gap), `lost` when the
    /// connection breaks or a heartbeat goes unanswered, and tries again every second.
    public func watchInvalidations(_ report: @escaping @Sendable (InvalidationSignal) -> Void) async {
        while !Task.isCancelled {
            do {
                try await watchOnce(report)
            } catch {
                if Task.isCancelled {
                    echoes.watching(false)
                    return
                }
                logger.warning("watching other gateways' announcements failed; retrying", metadata: ["error": "\(Self.describe(error))"])
            }
            echoes.watching(false)
            report(.lost)
            try? await Task.sleep(for: .seconds(1))
        }
    }

    private func watchOnce(_ report: @escaping @Sendable (InvalidationSignal) -> Void) async throws {
        let connection = try await Self.offThread { try self.connect() }
        do {
            try await listen(on: connection, report)
            try? await connection.close()
        } catch {
            try? await connection.close()
            throw error
        }
    }

    private func listen(on connection: PostgresConnection, _ report: @escaping @Sendable (InvalidationSignal) -> Void) async throws {
        /// The newest generation applied, or covered by a resync.
        let held = Held()
        let logger = self.logger, patience = self.patience, origin = self.origin, echoes = self.echoes
        let generation: @Sendable () async throws -> Int64 = {
            try await Self.offThread {
                // Its own bound, not the statement timeout: a half-open connection must be noticed within seconds.
                try connection.answer("SELECT value FROM veil_generation WHERE id = 1", logger: logger, within: min(patience, 2)).rows.first?
                    .decode(Int64.self) ?? 0
            }
        }
        /// The newest generation applied, or covered by a resync, once done (`held` moves when a notification arrives,
        /// before it is applied).
        let applied = Held()
        /// Records that everything up to `generation` is applied and tells the other gateways how far this one is (and
        /// that it is alive). Sent beside the loop, never waited for: one send at a time, carrying the newest value, so a
        /// slow round trip neither holds up the announcements behind it nor queues a send per announcement.
        let sender = Coalescing()
        let acknowledge: @Sendable (_ generation: Int64) -> Void = { generation in
            applied.value.withLock { $0 = max($0, generation) }
            // The send outlives the watch that asked for it: it keeps the store, whose event loop its connection runs
            // on, alive until it is done (a store let go of meanwhile would stop that loop under it).
            sender.request { [self] in
                let payload = "\(applied.value.withLock { $0 }) \(origin)"
                _ = try await Self.offThread {
                    guard !self.closing.load(ordering: .relaxed) else { return }
                    try withExtendedLifetime(self) {
                        try connection.answer("SELECT pg_notify(\(Announcements.ackChannel), \(payload))", logger: logger, within: min(patience, 2))
                    }
                }
            }
        }
        try await connection.listen(on: Announcements.channel) { notifications in
            try await connection.listen(on: Announcements.ackChannel) { acknowledgements in
                // Listening before reading the generation: whatever commits from here on is delivered; what came before is
                // covered by the resync.
                let current = try await generation()
                held.value.withLock { $0 = current }
                report(.resync)
                echoes.watching(true)
                echoes.saw(current)
                // At once: from now on writers wait for this gateway, which may cache from now on.
                acknowledge(current)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for try await acknowledgement in acknowledgements {
                            let parts = acknowledgement.payload.split(separator: " ")
                            guard parts.count == 2, let applied = Int64(parts[0]), parts[1] != origin else { continue }
                            echoes.peer(String(parts[1]), applied: applied)
                        }
                    }
                    group.addTask {
                        // A generation the heartbeat saw a second ago that no notification has brought since was lost:
                        // resync. A heartbeat that fails (a half-open connection) closes the connection, which ends the
                        // notifications below.
                        var seen = current
                        do {
                            while true {
                                try await Task.sleep(for: .seconds(1))
                                let now = try await generation()
                                let behind = held.value.withLock { held -> Bool in
                                    guard held < seen else { return false }
                                    held = now
                                    return true
                                }
                                if behind {
                                    report(.resync)
                                    echoes.saw(now)
                                }
                                seen = now
                                acknowledge(behind ? now : 0)
                            }
                        } catch {
                            try? await connection.close()
                            throw error
                        }
                    }
                    for try await notification in notifications {
                        guard let parsed = Announcements.parse(notification.payload) else {
                            report(.resync)
                            acknowledge(held.value.withLock { $0 })
                            continue
                        }
                        let step = held.value.withLock { held -> Int in
                            defer { held = max(held, parsed.generation) }
                            return parsed.generation <= held ? 0 : parsed.generation == held + 1 ? 1 : 2
                        }
                        defer { echoes.saw(parsed.generation) }
                        switch step {
                        case 0: continue
                        case 1 where parsed.origin == origin:
                            // Nothing to apply; the next heartbeat says so.
                            applied.value.withLock { $0 = max($0, parsed.generation) }
                        case 1:
                            if let invalidations = parsed.invalidations {
                                for invalidation in invalidations { report(.apply(invalidation)) }
                            } else {
                                report(.resync)
                            }
                            acknowledge(parsed.generation)
                        default:
                            report(.resync)
                            acknowledge(parsed.generation)
                        }
                    }
                    group.cancelAll()
                    throw PostgresUnavailable(reason: "the announcements' connection closed")
                }
            }
        }
    }
}

private final class Held: Sendable {
    let value = Mutex<Int64>(0)
}

/// Runs one send at a time; a request while one runs makes it run once more after (with whatever is newest then).
private final class Coalescing: Sendable {
    private let state = Mutex((running: false, again: false))

    func request(_ send: @escaping @Sendable () async throws -> Void) {
        let start = state.withLock { s -> Bool in
            guard !s.running else {
                s.again = true
                return false
            }
            s.running = true
            return true
        }
        guard start else { return }
        Task {
            repeat {
                try? await send()
            } while state.withLock { s -> Bool in
                defer { s.again = false }
                s.running = s.again
                return s.again
            }
        }
    }
}

/// This process's own announcements coming back through its watch, and how far every other gateway watching the
/// database has applied theirs, for the writes waiting until every gateway alive has applied theirs.
final class Echoes: Sendable {
    private struct Peer {
        var heard: DispatchTime
        var applied: Int64
    }
    private struct State {
        var watching = false
        var seen: Int64 = 0
        var peers: [String: Peer] = [:]
        var waiters: [(generation: Int64, ready: DispatchSemaphore)] = []
        /// A gateway heard from within this long (nanoseconds) is waited for.
        let peerLifetime: UInt64

        func done(_ generation: Int64) -> Bool {
            guard seen >= generation else { return false }
            let now = DispatchTime.now().uptimeNanoseconds
            return peers.values.allSatisfy { $0.applied >= generation || now - $0.heard.uptimeNanoseconds > peerLifetime }
        }

        /// Removes and returns the waiters now done (each judged once: a peer's lifetime may run out meanwhile).
        mutating func released() -> [DispatchSemaphore] {
            let finished = waiters.map { done($0.generation) }
            let ready = zip(waiters, finished).filter(\.1).map(\.0.ready)
            waiters = zip(waiters, finished).filter { !$0.1 }.map(\.0)
            return ready
        }
    }
    private let state: Mutex<State>

    /// - Parameter peerLifetime: how long a gateway that said nothing is still waited for. Each speaks every second and
    /// notices within 3 s that its own watch broke (then it serves nothing from memory): the lifetime leaves it twice
    /// that, so no writer stops waiting for a gateway that still serves from memory.
    init(peerLifetime: Double = 6) {
        state = Mutex(State(peerLifetime: UInt64(peerLifetime * 1e9)))
    }

    /// The newest generation the watch has received.
    var seen: Int64 { state.withLock { $0.seen } }

    /// Other gateways heard from within their lifetime.
    var alivePeers: Int {
        state.withLock { s in
            let now = DispatchTime.now().uptimeNanoseconds
            return s.peers.values.filter { now - $0.heard.uptimeNanoseconds <= s.peerLifetime }.count
        }
    }

    /// Another gateway has applied every announcement up to `applied` (and is alive).
    func peer(_ origin: String, applied: Int64) {
        let released = state.withLock { s -> [DispatchSemaphore] in
            let now = DispatchTime.now()
            s.peers[origin] = Peer(heard: now, applied: max(s.peers[origin]?.applied ?? 0, applied))
            // Gateways gone for ten lifetimes (restarted under a new origin) are forgotten.
            if s.peers.count > 16 { s.peers = s.peers.filter { now.uptimeNanoseconds - $0.value.heard.uptimeNanoseconds < 10 * s.peerLifetime } }
            return s.released()
        }
        for ready in released { ready.signal() }
    }

    /// Not watching: nobody waits (and those waiting go on).
    func watching(_ on: Bool) {
        let released = state.withLock { s -> [DispatchSemaphore] in
            s.watching = on
            guard !on else { return [] }
            defer { s.waiters.removeAll() }
            return s.waiters.map(\.ready)
        }
        for ready in released { ready.signal() }
    }

    func saw(_ generation: Int64) {
        let released = state.withLock { s -> [DispatchSemaphore] in
            s.seen = max(s.seen, generation)
            return s.released()
        }
        for ready in released { ready.signal() }
    }

    /// Waits until the watch has received `generation` and every other gateway alive has applied it, at most `timeout`
    /// seconds; at once when not watching.
    func wait(for generation: Int64, timeout: Double) {
        let ready = DispatchSemaphore(value: 0)
        let waits = state.withLock { s -> Bool in
            guard s.watching, !s.done(generation) else { return false }
            s.waiters.append((generation, ready))
            return true
        }
        if waits { _ = ready.wait(timeout: .now() + timeout) }
    }
}
