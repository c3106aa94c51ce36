/// What every gateway on the same database must forget from memory when one of them changes it. Announced inside the
/// transaction that makes the change, so it reaches the others when, and only if, the change commits.
public enum Invalidation: Sendable, Hashable {
    /// A subject's consent changed: its cached lists go. The token is a pseudonym, as everywhere in the database.
    case subject(token: String)
    /// A subject's data is gone or no longer to be used (a withdrawal, an erasure, a lapse): its cached lists and data
    /// keys go and the served models forget it; with `unlearn` its training data was deleted, so every gateway's model
    /// unlearns it within the unlearning delay.
    case forgotten(token: String, unlearn: Bool)
    /// An identity was linked or unlinked: remembered links and every cached list go.
    case links
    /// A principal was revoked: every cached principal goes.
    case principals
    /// A new model version was published (``ModelRepository``): every gateway loads and serves it.
    case model(version: String)
}

/// Announcements to the other gateways on this database.
public protocol InvalidationRepository {
    /// Sends `invalidations` to every gateway watching this database when this transaction commits (never if it
    /// rolls back). A store that only one process serves may ignore them.
    func announce(_ invalidations: [Invalidation]) throws
    /// How many announcements the database had seen as of this transaction's snapshot (0 where nobody announces): a
    /// model trained from this snapshot saw every change announced up to it.
    func announcementGeneration() throws -> Int64
}

/// What a watch over a database's announcements reports (``OperationalStore/watchInvalidations(_:)``).
public enum InvalidationSignal: Sendable, Hashable {
    /// Another process changed something this one may hold in memory.
    case apply(Invalidation)
    /// Announcements may have been missed (the watch has just begun or resumed, or a generation was skipped): forget
    /// everything held in memory; the watch is current again from here on.
    case resync
    /// The watch is down: nothing held in memory may be trusted until the next ``resync``.
    case lost
}
