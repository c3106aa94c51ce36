import Foundation
import Synchronization
import VeilCore

/// Signed-in console users, kept in this process only: a random session id (the cookie) → the principal, the CSRF
/// token of their forms and when the session was last used. An API key is exchanged for a session once and never
/// kept.
final class ConsoleSessions: Sendable {
    struct Session: Sendable {
        /// The session's id: its cookie's value.
        let id: String
        var principal: Principal
        var csrf: String
        var created: Date
        var lastSeen: Date
        /// What the session's data-subject requests did, by request id, for the result page that follows them.
        var results: [String: String] = [:]
        /// Exports waiting for their one download, by request id.
        var downloads: [String: Data] = [:]
    }

    /// A session unused this long is gone (seconds).
    static let idleTimeout: TimeInterval = 15 * 60
    /// And any session after this long, however busy.
    static let maximumAge: TimeInterval = 8 * 3600
    static let maximumSessions = 10_000

    private let table = Mutex<[String: Session]>([:])

    /// A new session for `principal`: its id (the cookie's value) and its CSRF token.
    func create(_ principal: Principal, now: Date) -> (id: String, csrf: String) {
        let id = FormToken.make(), csrf = FormToken.make()
        table.withLock { sessions in
            if sessions.count >= Self.maximumSessions { sessions = sessions.filter { Self.live($0.value, now: now) } }
            sessions[id] = Session(id: id, principal: principal, csrf: csrf, created: now, lastSeen: now)
        }
        return (id, csrf)
    }

    /// The live session under `id`, its idle time restarted; nil (and dropped) once expired.
    func use(_ id: String, now: Date) -> Session? {
        table.withLock { sessions in
            guard var session = sessions[id] else { return nil }
            guard Self.live(session, now: now) else {
                sessions[id] = nil
                return nil
            }
            session.lastSeen = now
            sessions[id] = session
            return session
        }
    }

    func note(_ id: String, requestID: String, result: String, download: Data? = nil) {
        table.withLock { sessions in
            sessions[id]?.results[requestID] = result
            if let count = sessions[id]?.results.count, count > 50 { sessions[id]?.results.removeAll() }
            // At most a few exports wait in memory, and only until downloaded or the session ends.
            if let download {
                if let count = sessions[id]?.downloads.count, count >= 3 { sessions[id]?.downloads.removeAll() }
                sessions[id]?.downloads[requestID] = download
            }
        }
    }

    /// The export waiting under `requestID`, removed as it is handed out.
    func takeDownload(_ id: String, requestID: String) -> Data? {
        table.withLock { $0[id]?.downloads.removeValue(forKey: requestID) }
    }

    func drop(_ id: String) { table.withLock { _ = $0.removeValue(forKey: id) } }

    /// Drops every session of the principal named `name` (revoked).
    func drop(principal name: String) { table.withLock { $0 = $0.filter { $0.value.principal.name != name } } }

    private static func live(_ s: Session, now: Date) -> Bool {
        now.timeIntervalSince(s.lastSeen) < idleTimeout && now.timeIntervalSince(s.created) < maximumAge
    }
}
