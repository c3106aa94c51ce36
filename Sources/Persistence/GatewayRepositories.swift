/// A principal as stored: its role, namespace and allowed origins by name, its key only as a keyed hash.
public struct PrincipalRow: Sendable, Equatable {
    public var name: String
    public var role: String
    public var namespace: String
    /// Normalized origins separated by spaces (browser keys), or empty.
    public var origins: String
    public var keyHash: [UInt8]
    public var createdAt: Int64
    public var revokedAt: Int64?

    public init(name: String, role: String, namespace: String, origins: String, keyHash: [UInt8], createdAt: Int64, revokedAt: Int64?) {
        self.name = name
        self.role = role
        self.namespace = namespace
        self.origins = origins
        self.keyHash = keyHash
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }
}

/// The API principals, as seen from one transaction.
public protocol PrincipalRepository {
    func principalExists(name: String) throws -> Bool
    func insertPrincipal(_ row: PrincipalRow) throws
    /// Marks `name` revoked at `at` unless it already was. Returns how many rows changed (0 or 1).
    func revokePrincipal(name: String, at: Int64) throws -> Int
    /// Every principal, by name.
    func principals() throws -> [PrincipalRow]
    /// The principal named `name` unless revoked.
    func activePrincipal(name: String) throws -> PrincipalRow?
    /// The principal whose key hashes to `keyHash`, revoked or not.
    func principal(keyHash: [UInt8]) throws -> PrincipalRow?
}

/// Experiment counters (aggregates only: no token), as seen from one transaction.
public protocol ExperimentCountRepository {
    func addExperimentCount(experiment: String, variant: String, metric: String, count: Int) throws
    func experimentCounts(experiment: String) throws -> [(variant: String, metric: String, count: Int)]
}

/// What each campaign's bandit learnt (aggregates over context vectors: no token), as seen from one transaction.
public protocol BanditRepository {
    /// Campaign → saved state.
    func savedBandits() throws -> [String: [UInt8]]
    func saveBandit(campaign: String, state: [UInt8], at: Int64) throws
}
