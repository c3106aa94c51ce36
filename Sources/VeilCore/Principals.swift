import Foundation
import NIOCore
import Persistence
import Policy
import Storage
import Synchronization
import Vault

/// API-key principals. Only a keyed hash of each key is stored; the key itself is shown once, at creation.
public struct PrincipalStore: Sendable {
    public struct Listing: Sendable, Equatable {
        public var name: String
        public var role: String
        public var namespace: String
        public var origins: [String]
        public var revoked: Bool
    }

    private let fingerprinter: Fingerprinter
    private let proofs: SubjectProofs
    public let store: any OperationalStore
    /// Successful lookups, kept for at most `cacheSeconds`: a revocation by another process (the CLI) reaches a
    /// running server within that time; one made through this store applies at once.
    private let cache = PrincipalCache()
    private let now: @Sendable () -> Date
    public var cacheSeconds: TimeInterval = 1

    /// - Parameter ring: the API-key hashing key is derived from its pseudonymization key.
    public init(store: any OperationalStore, ring: KeyRing, now: @escaping @Sendable () -> Date = Date.init) {
        self.now = now
        self.store = store
        fingerprinter = ring.fingerprinter(for: .apiKeys)
        proofs = ring.subjectProofs
    }

    func hash(_ key: String) -> [UInt8] { fingerprinter.digest(Array(key.utf8)) }

    /// Creates a principal and returns its new API key (256 random bits, `vk_` + 64 hex digits). A browser key
    /// (role ``Role/browser``) needs the origins of the pages it is put in; no other key may have any.
    public func add(
        name: String, role: String, namespace: String = "default", origins: [String] = [], knownRoles: Set<String>
    ) throws -> String {
        guard !name.isEmpty, name.count <= 64, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw CoreError.invalid("principal names are 1-64 letters, digits, '-', '_' or '.'")
        }
        guard knownRoles.contains(role) else {
            throw CoreError.invalid("unknown role '\(role)'; roles: \(knownRoles.sorted().joined(separator: ", "))")
        }
        let origins = try origins.map(Self.normalizedOrigin)
        if role == Role.browser {
            guard !origins.isEmpty else {
                throw CoreError.invalid("a browser key needs the origin of every page it is put in: --origin https://shop.example")
            }
        } else if !origins.isEmpty {
            throw CoreError.invalid("only a browser key is bound to origins; role '\(role)' keys are secret and never sent by a page")
        }
        let key = "vk_" + SecureRandom.bytes(32).hexString
        let row = PrincipalRow(
            name: name, role: role, namespace: namespace, origins: origins.joined(separator: " "), keyHash: hash(key),
            createdAt: Int64(now().timeIntervalSince1970), revokedAt: nil)
        try store.writeBlocking { tx in
            if try tx.principalExists(name: name) {
                throw CoreError(.conflict, "conflict", "principal '\(name)' exists; revoke it or choose another name")
            }
            try tx.insertPrincipal(row)
        }
        return key
    }

    /// The identity secret of a browser key: the shop's server proves a signed-in person's id with it (see
    /// ``SubjectProofs``). Derived from the key, never stored; shown once beside the key.
    public func identitySecret(ofKey key: String) -> String { proofs.secret(forKey: hash(key)) }

    /// Whether the request's proof is the shop's proof of `subject` for this browser principal's key, valid at `now`.
    func vouches(_ principal: Principal, for subject: String, at now: Date) -> Bool {
        guard let proof = principal.subjectProof, !principal.keyFingerprint.isEmpty else { return false }
        return proofs.isValid(proof: proof, subject: subject, keyFingerprint: principal.keyFingerprint, now: Int64(now.timeIntervalSince1970))
    }

    /// Whether a browser key may name `subject`: one of the script's random ids (`anon-` and 32 hex digits: no
    /// person's id, unguessable, so naming one speaks for nobody else) or an id the shop's proof vouches for.
    func browserMayName(_ subject: String, _ principal: Principal, at now: Date) -> Bool {
        Self.isScriptID(subject) || vouches(principal, for: subject, at: now)
    }

    static func isScriptID(_ subject: String) -> Bool {
        let bytes = subject.utf8
        return bytes.count == 37 && subject.hasPrefix("anon-")
            && bytes.dropFirst(5).allSatisfy {
                (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0)
            }
    }

    static let subjectProofRequired = CoreError(
        .forbidden, "subject_proof_required",
        "a browser key may name a shop's own subject id only with the shop's unexpired proof (proof=EXPIRES.HMAC in the query, computed "
            + "on the shop's server with the key's identity secret); the script's own ids (anon- and 32 hex digits) need none")

    /// `scheme://host[:port]` in lower case, as a browser sends it in `Origin`; refuses paths, wildcards and `null`.
    static func normalizedOrigin(_ text: String) throws -> String {
        let lowered = text.lowercased()
        let refuse = CoreError.invalid(
            "origin '\(text.prefix(100))' is not an origin: give scheme, host and optional port only, as https://shop.example or http://localhost:8000"
        )
        guard let components = URLComponents(string: lowered), let scheme = components.scheme, ["http", "https"].contains(scheme),
            let host = components.host, !host.isEmpty, !host.contains("*"), components.user == nil, components.password == nil,
            components.path.isEmpty || components.path == "/", components.query == nil, components.fragment == nil
        else { throw refuse }
        // A browser leaves the scheme's default port out of `Origin`.
        let port = components.port.flatMap { ($0 == 443 && scheme == "https") || ($0 == 80 && scheme == "http") ? nil : ":\($0)" } ?? ""
        return "\(scheme)://\(host)\(port)"
    }

    /// Revokes a principal. Through this store (the server's `DELETE /v1/principals/{name}`) its key stops working
    /// before this returns; a revocation by another process (the command line) reaches a running server within
    /// `cacheSeconds`.
    public func revoke(name: String) throws {
        let at = Int64(now().timeIntervalSince1970)
        try revoked(name, changed: try store.writeBlocking { try Self.revoke(name, at: at, in: $0) })
    }

    /// The same, for a request's task (the write suspends instead of blocking a thread); durable before it returns.
    public func revoke(name: String) async throws {
        let at = Int64(now().timeIntervalSince1970)
        try revoked(name, changed: try await store.write { try Self.revoke(name, at: at, in: $0) })
        try await store.syncCommitted()
    }

    private static func revoke(_ name: String, at: Int64, in tx: some OperationalTransaction) throws -> Int {
        let changed = try tx.revokePrincipal(name: name, at: at)
        if changed == 1 { try tx.announce([.principals]) }
        return changed
    }

    /// Forgets every principal looked up so far (another gateway revoked one).
    public func forgetCached() { cache.clear() }

    private static func origins(_ column: String) -> [String] { column.split(separator: " ").map(String.init) }

    private static func principal(_ row: PrincipalRow) -> Principal {
        Principal(name: row.name, role: row.role, namespace: row.namespace, origins: origins(row.origins))
    }

    /// After the commit: a lookup that read the principal before it may not cache it any more (generation).
    private func revoked(_ name: String, changed: Int) throws {
        cache.clear()
        guard changed == 1 else { throw CoreError(.notFound, "not_found", "no active principal named '\(name)'") }
    }

    /// Every principal (the command line; it blocks its thread for the read).
    public func list() throws -> [Listing] { try store.readBlocking { try $0.principals() }.map(Self.listing) }

    /// The same for a request's task: the read suspends, never holding a thread of the cooperative pool while it
    /// waits for a connection.
    public func list() async throws -> [Listing] { try await store.read { try $0.principals() }.map(Self.listing) }

    private static func listing(_ row: PrincipalRow) -> Listing {
        Listing(name: row.name, role: row.role, namespace: row.namespace, origins: origins(row.origins), revoked: row.revokedAt != nil)
    }

    /// The active principal named `name`, or nil (unknown or revoked): a console session checks it on every page.
    public func active(name: String) async throws -> Principal? {
        try await store.read { try $0.activePrincipal(name: name) }.map(Self.principal)
    }

    /// The active principal holding `key`, or nil. The stored hash is compared in constant time.
    public func authenticate(key: String) async throws -> Principal? {
        guard key.hasPrefix("vk_"), key.utf8.count == 67 else { return nil }
        let digest = hash(key)
        let now = self.now()
        if let hit = cache.get(digest, now: now) { return hit }
        let generation = cache.generation
        let principal = try await store.read { tx -> Principal? in
            guard let row = try tx.principal(keyHash: digest) else { return nil }
            guard SecureRandom.constantTimeEqual(row.keyHash, digest), row.revokedAt == nil else { return nil }
            var principal = Self.principal(row)
            principal.keyFingerprint = digest
            return principal
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
