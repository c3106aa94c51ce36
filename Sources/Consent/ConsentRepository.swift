/// One event of the consent ledger as stored: its hash-chain columns and its canonical JSON body.
public struct StoredConsentEvent: Sendable, Equatable {
    public var sequence: Int64
    public var token: String
    public var purpose: String
    public var body: String
    public var previousHash: String
    public var hash: String

    public init(sequence: Int64, token: String, purpose: String, body: String, previousHash: String, hash: String) {
        self.sequence = sequence
        self.token = token
        self.purpose = purpose
        self.body = body
        self.previousHash = previousHash
        self.hash = hash
    }
}

/// The current consent of one token for one purpose, as the ledger's last event for them left it.
public struct ConsentStateRow: Sendable, Equatable, CustomStringConvertible {
    public var token: String
    public var purpose: String
    public var granted: Bool
    public var sequence: Int64
    public var expiresAt: Int64?
    public var noticeVersion: String
    public var purposeVersion: Int

    public init(
        token: String, purpose: String, granted: Bool, sequence: Int64, expiresAt: Int64?, noticeVersion: String, purposeVersion: Int
    ) {
        self.token = token
        self.purpose = purpose
        self.granted = granted
        self.sequence = sequence
        self.expiresAt = expiresAt
        self.noticeVersion = noticeVersion
        self.purposeVersion = purposeVersion
    }

    public var description: String {
        "granted=\(granted) seq=\(sequence) expires=\(expiresAt.map(String.init) ?? "-") notice=\(noticeVersion) purpose_version=\(purposeVersion)"
    }
}

/// What the consent ledger stores, as seen from one transaction of a storage backend. The ledger is append-only:
/// a backend offers no way to change or delete an event, and should refuse one made behind its back.
public protocol ConsentRepository {
    /// The last event's sequence number and hash; nil for an empty ledger.
    func consentHead() throws -> (sequence: Int64, hash: String)?
    /// Appends `event` and sets the current state of its token and purpose to `state`, together.
    func appendConsentEvent(_ event: StoredConsentEvent, state: ConsentStateRow) throws
    /// The current state of `token` for `purpose`.
    func consentState(token: String, purpose: String) throws -> ConsentStateRow?
    /// The current states of `tokens` for `purpose`, by token (one statement on a database server; by default one read
    /// each).
    func consentStates(tokens: [String], purpose: String) throws -> [String: ConsentStateRow]
    /// The purposes whose current state for `token` is a grant, sorted.
    func grantedConsentPurposes(token: String) throws -> [String]
    /// Every event of `token`, oldest first.
    func consentEvents(token: String) throws -> [StoredConsentEvent]
    /// Every event in sequence order, until `body` returns false.
    func forEachConsentEvent(_ body: (StoredConsentEvent) throws -> Bool) throws
    /// Every current state, in any order.
    func forEachConsentState(_ body: (ConsentStateRow) throws -> Void) throws
    /// Granted states with an expiry at or before `atMillis`.
    func lapsedConsents(atMillis: Int64) throws -> [(token: String, purpose: String)]
}

extension ConsentRepository {
    public func consentStates(tokens: [String], purpose: String) throws -> [String: ConsentStateRow] {
        var out: [String: ConsentStateRow] = [:]
        for token in tokens { out[token] = try consentState(token: token, purpose: purpose) }
        return out
    }
}
