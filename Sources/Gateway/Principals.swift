import Foundation
import GRDB
import Hummingbird
import Storage
import Synchronization
import Vault

/// API-key principals. Only a keyed hash of each key is stored; the key itself is shown once, at creation.
public struct PrincipalStore: Sendable {
    public struct Migrations: MigrationSet {
        public init() {}
        public func register(in migrator: inout DatabaseMigrator) {
            migrator.registerMigration("gateway.v1.principals") { db in
                try db.execute(
                    sql: """
                        CREATE TABLE principals (
                            name TEXT PRIMARY KEY NOT NULL,
                            role TEXT NOT NULL,
                            namespace TEXT NOT NULL,
                            key_hash TEXT NOT NULL UNIQUE,
                            created_at INTEGER NOT NULL,
                            revoked_at INTEGER
                        ) WITHOUT ROWID
                        """)
            }
        }
    }

    public struct Listing: Sendable, Equatable {
        public var name: String
        public var role: String
        public var namespace: String
        public var revoked: Bool
    }

    private let fingerprinter: Fingerprinter
    public let store: Store
    /// Successful lookups, kept for at most `cacheSeconds`: a revocation by another process (the CLI) reaches a
    /// running server within that time; one made through this store applies at once.
    private let cache = PrincipalCache()
    public var cacheSeconds: TimeInterval = 1

    /// - Parameter ring: the API-key hashing key is derived from its pseudonymization key.
    public init(store: Store, ring: KeyRing) {
        self.store = store
        fingerprinter = ring.fingerprinter(for: .apiKeys)
    }

    func hash(_ key: String) -> [UInt8] { fingerprinter.digest(Array(key.utf8)) }

    /// Creates a principal and returns its new API key (256 random bits, `vk_` + 64 hex digits).
    public func add(name: String, role: String, namespace: String = "default", knownRoles: Set<String>) throws -> String {
        guard !name.isEmpty, name.count <= 64, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw GatewayError.badRequest("principal names are 1-64 letters, digits, '-', '_' or '.'")
        }
        guard knownRoles.contains(role) else {
            throw GatewayError.badRequest("unknown role '\(role)'; roles: \(knownRoles.sorted().joined(separator: ", "))")
        }
        let key = "vk_" + SecureRandom.bytes(32).hexString
        let keyHash = hash(key).hexString
        try store.pool.write { db in
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM principals WHERE name = ?", arguments: [name]) == true {
                throw GatewayError(.conflict, "conflict", "principal '\(name)' exists; revoke it or choose another name")
            }
            try db.execute(
                sql: "INSERT INTO principals (name, role, namespace, key_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                arguments: [name, role, namespace, keyHash, Int64(Date().timeIntervalSince1970)])
        }
        return key
    }

    /// Revokes a principal. Through this store (the server's `DELETE /v1/principals/{name}`) its key stops working
    /// before this returns; a revocation by another process (the command line) reaches a running server within
    /// `cacheSeconds`.
    public func revoke(name: String) throws {
        try revoked(name, changed: try store.pool.write { try Self.markRevoked(name, in: $0) })
    }

    /// The same, for a request's task (the write suspends instead of blocking a thread); durable before it returns.
    public func revoke(name: String) async throws {
        try revoked(name, changed: try await store.pool.write { try Self.markRevoked(name, in: $0) })
        try await store.syncWAL()
    }

    private static func markRevoked(_ name: String, in db: Database) throws -> Int {
        try db.execute(
            sql: "UPDATE principals SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
            arguments: [Int64(Date().timeIntervalSince1970), name])
        return db.changesCount
    }

    /// After the commit: a lookup that read the principal before it may not cache it any more (generation).
    private func revoked(_ name: String, changed: Int) throws {
        cache.clear()
        guard changed == 1 else { throw GatewayError(.notFound, "not_found", "no active principal named '\(name)'") }
    }

    public func list() throws -> [Listing] {
        try store.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT name, role, namespace, revoked_at FROM principals ORDER BY name").map {
                Listing(name: $0["name"], role: $0["role"], namespace: $0["namespace"], revoked: ($0["revoked_at"] as Int64?) != nil)
            }
        }
    }

    /// The active principal holding `key`, or nil. The stored hash is compared in constant time.
    public func authenticate(key: String) async throws -> Principal? {
        guard key.hasPrefix("vk_"), key.utf8.count == 67 else { return nil }
        let digest = hash(key)
        let now = Date()
        if let hit = cache.get(digest, now: now) { return hit }
        let generation = cache.generation
        let principal = try await store.pool.read { db -> Principal? in
            guard
                let row = try Row.fetchOne(
                    db.cachedStatement(sql: "SELECT name, role, namespace, key_hash, revoked_at FROM principals WHERE key_hash = ?"),
                    arguments: [digest.hexString])
            else { return nil }
            guard let stored = [UInt8](hexString: row["key_hash"]), SecureRandom.constantTimeEqual(stored, digest) else { return nil }
            guard (row["revoked_at"] as Int64?) == nil else { return nil }
            return Principal(name: row["name"], role: row["role"], namespace: row["namespace"])
        }
        if let principal { cache.put(digest, principal, until: now.addingTimeInterval(cacheSeconds), generation: generation) }
        return principal
    }
}

/// Recently authenticated principals by key hash.
/// A lookup reads ``generation`` before its database read and caches only if no ``clear()`` came since, so a
/// lookup that read a principal just before its revocation committed cannot cache it after.
final class PrincipalCache: Sendable {
    private let state = Mutex<(entries: [[UInt8]: (Principal, Date)], generation: UInt64)>(([:], 0))

    var generation: UInt64 { state.withLock { $0.generation } }

    func get(_ digest: [UInt8], now: Date) -> Principal? {
        state.withLock { $0.entries[digest].flatMap { $0.1 > now ? $0.0 : nil } }
    }

    func put(_ digest: [UInt8], _ principal: Principal, until: Date, generation: UInt64) {
        state.withLock { s in
            guard s.generation == generation else { return }
            if s.entries.count > 10_000 { s.entries.removeAll() }
            s.entries[digest] = (principal, until)
        }
    }

    func clear() {
        state.withLock {
            $0.entries.removeAll(); $0.generation &+= 1
        }
    }
}
