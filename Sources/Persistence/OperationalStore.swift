import Consent
import FeatureStore
import Pseudonymization
import Storage

/// One transaction of the operational database: every repository Veil keeps there, so that a use case can change
/// several in one unit of work (a withdrawal's ledger append and the deletion of the subject's rows commit together).
/// A storage backend's transaction type conforms; the core names only this protocol.
public protocol OperationalTransaction:
    SubjectKeyRepository, ConsentRepository, IdentityRepository, LinkRepository, FeatureRepository, DeliveryRepository,
    SourceQualityRepository, PrincipalRepository, ExperimentCountRepository, BanditRepository, InvalidationRepository, ModelRepository
{}

/// The operational database (consent, tokens, sealed features, catalog, key store, principals, counters) as the core
/// sees it, whatever engine holds it.
public protocol OperationalStore: TransactionRunner, AnyObject where Transaction: OperationalTransaction {
    /// Makes every transaction committed before this call durable against a power cut (a store that syncs each
    /// commit returns at once).
    func syncCommitted() async throws
    /// After an erasure: leaves no old image of what was shredded in the engine's own files (a write-ahead log), or
    /// says why not yet and keeps trying.
    func scrubAfterErasure() async -> ErasureScrub
    /// Whether the database answers a trivial query (readiness).
    func isReachable() async -> Bool
    /// Whether other gateways may share this database (then their announcements must be watched).
    var isShared: Bool { get }
    /// Reports what other processes announce (``InvalidationRepository``) until the calling task is cancelled,
    /// reconnecting by itself and reporting ``InvalidationSignal/lost`` while it cannot watch. A store that is not
    /// shared returns at once.
    func watchInvalidations(_ report: @escaping @Sendable (InvalidationSignal) -> Void) async
    /// Runs `body` as the only process of the database that trains (on a shared database, a lock held across gateways
    /// for as long as `body` runs; waits for it up to `patience` seconds). Nil when another process kept it that long.
    func asSoleTrainer<T>(patience: Double, _ body: () throws -> T) throws -> T?
    /// Where the gateways sharing this database ship their audit logs; nil for a database one gateway keeps alone.
    var auditArchive: (any AuditArchive)? { get }
}

extension OperationalStore {
    public var auditArchive: (any AuditArchive)? { nil }
}

/// What ``OperationalStore/scrubAfterErasure()`` achieved.
public enum ErasureScrub: Sendable, Equatable {
    /// No old page image is left.
    case done
    /// A reader kept the log busy; the scrub is retried in the background until it succeeds.
    case deferred(reason: String)
}

/// An error of a storage backend that the edge must tell apart: a full disk is a 503 to retry, not a 500.
public protocol BackendError: Error {
    var isDiskFull: Bool { get }
    /// The database did not answer (down, restarting, unreachable, a statement timed out): the request may succeed
    /// if retried, and is answered 503 with Retry-After.
    var isUnavailable: Bool { get }
    /// What went wrong, for the server log: codes and messages that name tables and columns, never values.
    var loggableReason: String { get }
}

extension BackendError {
    public var isUnavailable: Bool { false }
}

extension StorageError: BackendError {
    public var isDiskFull: Bool { code == .full }
    public var loggableReason: String { "storage error (\(code.rawValue)): \(message)" }
}
