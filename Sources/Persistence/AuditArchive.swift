/// One audit entry as a gateway shipped it to the shared database: its log, its place in that log, the fields a
/// compliance query filters on, and the entry itself as the gateway's log holds it (`body`, encoded by the core).
/// The filter fields are derived from the body and never trusted by verification, which reads the body alone and
/// checks that they agree with it.
public struct ArchivedAuditEntry: Sendable, Equatable {
    public var log: String
    public var sequence: Int64
    /// Milliseconds since 1970.
    public var at: Int64
    public var actor: String
    public var action: String
    public var outcome: String
    public var subjectToken: String?
    /// The entry's digest (hex), as its successor links to it.
    public var hash: String
    public var body: [UInt8]
    /// Where the shared database placed it (increasing in the order entries arrived): a query's cursor.
    public var position: Int64

    public init(
        log: String, sequence: Int64, at: Int64, actor: String, action: String, outcome: String, subjectToken: String?, hash: String,
        body: [UInt8], position: Int64 = 0
    ) {
        self.log = log
        self.sequence = sequence
        self.at = at
        self.actor = actor
        self.action = action
        self.outcome = outcome
        self.subjectToken = subjectToken
        self.hash = hash
        self.body = body
        self.position = position
    }
}

/// A signed tree head of one gateway's log, as shipped: the signed note is what verification trusts.
public struct ArchivedAuditHead: Sendable, Equatable {
    public var log: String
    public var size: Int64
    public var at: Int64
    public var note: String

    public init(log: String, size: Int64, at: Int64, note: String) {
        self.log = log
        self.size = size
        self.at = at
        self.note = note
    }
}

/// What a compliance query across every gateway's log asks for; nil fields do not filter.
public struct ArchivedAuditFilter: Sendable, Equatable {
    public var actor: String?
    public var subjectToken: String?
    public var action: String?
    public var outcome: String?
    public var from: Int64?
    public var to: Int64?
    /// Entries placed after this position (``ArchivedAuditEntry/position``).
    public var after: Int64
    public var limit: Int

    public init(
        actor: String? = nil, subjectToken: String? = nil, action: String? = nil, outcome: String? = nil, from: Int64? = nil,
        to: Int64? = nil, after: Int64 = 0, limit: Int = 100
    ) {
        self.actor = actor
        self.subjectToken = subjectToken
        self.action = action
        self.outcome = outcome
        self.from = from
        self.to = to
        self.after = after
        self.limit = limit
    }
}

/// Every gateway's audit log, shipped into the database the gateways share, so that any of them verifies and queries
/// all the logs as one. Each gateway's own log stays where its appends are made durable (its response waits for that,
/// not for this); shipping follows within about a second. Written outside the operational writers' lock: shipping
/// never holds up a consent change or an event batch.
public protocol AuditArchive: Sendable {
    /// Reserves `log` for this process for as long as it lives: a second gateway configured with the same log name is
    /// refused at start rather than shipping a fork of the first one's log.
    func claim(log: String) async throws
    /// How far `log` was shipped: its last entry's sequence number and digest (nil for none), and its largest head.
    func shipped(log: String) async throws -> (sequence: Int64, hash: String?, headSize: Int64)
    /// Stores `entries` (consecutive, continuing what ``shipped(log:)`` reported) and `heads` in one transaction;
    /// rows already there are left as they are. Shipments are placed one after another: a row's position is never
    /// below that of a row committed before it, so a query paging by position misses none.
    func ship(entries: [ArchivedAuditEntry], heads: [ArchivedAuditHead]) async throws
    /// Deletes `log`'s entries after sequence number `size` and its heads larger than it (a copy's tail that no head
    /// the gateway's file holds vouches for, before the file's own is shipped in its place).
    func retract(log: String, after size: Int64) async throws
    /// The names of every log shipped, sorted.
    func logs() async throws -> [String]
    /// Up to `limit` rows of `log` after `after` in the order of (sequence number, position), whatever their
    /// sequence numbers (verification reads every row, including any an editor put before the first or twice).
    func entries(log: String, after: ArchiveCursor, limit: Int) async throws -> [ArchivedAuditEntry]
    /// The digests (hex) of `log`'s entries 1…`through`, in order: the leaves of its tree, for a consistency proof.
    func digests(log: String, through: Int64) async throws -> [String]
    /// Every head of `log`, smallest first.
    func heads(log: String) async throws -> [ArchivedAuditHead]
    /// The entries of every log matching `filter`, in the order they were placed, from an index.
    func query(_ filter: ArchivedAuditFilter) async throws -> [ArchivedAuditEntry]
}

/// Where a reading of one log's copy stopped: the last row's sequence number and position.
public struct ArchiveCursor: Sendable, Equatable {
    public var sequence: Int64
    public var position: Int64

    public init(sequence: Int64, position: Int64) {
        self.sequence = sequence
        self.position = position
    }

    /// Before every row.
    public static let start = ArchiveCursor(sequence: .min, position: .min)
}
