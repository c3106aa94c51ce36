import Foundation
import Policy
import Storage
import Vault

/// The append-only, hash-chained consent ledger and the current state derived from it.
///
/// Each event's hash covers its content, its sequence number and the previous event's hash, so an edited,
/// deleted, inserted or reordered event breaks the chain at that point (see ``verify(in:)``).
/// Consent-based purposes default to "no consent".
public struct ConsentLedger: Sendable {
    public static let genesisHash = String(repeating: "0", count: 64)
    /// Two letters, optionally a separator and one to three letters or digits (ISO 3166-1 and -2 style).
    static func isJurisdictionCode(_ s: String) -> Bool {
        let b = Array(s.utf8)
        func letter(_ c: UInt8) -> Bool { (c | 0x20) >= UInt8(ascii: "a") && (c | 0x20) <= UInt8(ascii: "z") }
        func alnum(_ c: UInt8) -> Bool { letter(c) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) }
        guard b.count >= 2, letter(b[0]), letter(b[1]) else { return false }
        if b.count == 2 { return true }
        guard b[2] == UInt8(ascii: "-") || b[2] == UInt8(ascii: "_"), (4...6).contains(b.count) else { return false }
        return b[3...].allSatisfy(alnum)
    }

    /// Recorded on withdrawals that Veil makes itself (erasure, GPC) or that arrive without a jurisdiction.
    public static let unspecifiedJurisdiction = "unspecified"
    public let policy: PolicySet

    public init(policy: PolicySet) { self.policy = policy }

    /// Builds a complete event from a request, filling purpose version, lawful basis and notice hash from the
    /// policy. Refuses an unknown purpose or notice version.
    public func makeEvent(
        token: SubjectToken, purpose: String, granted: Bool, at: Date, sourceApp: String, principal: String,
        method: ConsentMethod, noticeVersion: String, jurisdiction: String, expiresAt: Date? = nil
    ) throws -> ConsentEvent {
        guard let p = policy.purposes[purpose] else {
            throw ConsentError(.unknownPurpose, "unknown purpose '\(purpose)'; known: \(policy.purposes.keys.sorted().joined(separator: ", "))")
        }
        guard let notice = policy.notices[noticeVersion] else {
            throw ConsentError(
                .unknownNotice, "unknown notice version '\(noticeVersion)'; known: \(policy.notices.keys.sorted().joined(separator: ", "))")
        }
        // A grant must say under which law it was given; a withdrawal is never refused for lacking it.
        guard !granted || !(jurisdiction.isEmpty || jurisdiction == Self.unspecifiedJurisdiction) else {
            throw ConsentError(.invalid, "jurisdiction is required to grant consent (for example EU, DE, US-CA)")
        }
        // Kept in clear in the ledger, which erasure keeps: only a code, never free text (it held an e-mail once).
        guard jurisdiction == Self.unspecifiedJurisdiction || Self.isJurisdictionCode(jurisdiction) else {
            throw ConsentError(.invalid, "jurisdiction must be a country or region code such as EU, DE, US-CA or us_ca")
        }
        return ConsentEvent(
            token: token, purpose: purpose, purposeVersion: p.version, lawfulBasis: p.lawfulBasis.rawValue, granted: granted,
            at: Int64(at.timeIntervalSince1970 * 1000), sourceApp: sourceApp, principal: principal, method: method,
            noticeVersion: noticeVersion, noticeHash: notice.hash, jurisdiction: jurisdiction,
            expiresAt: expiresAt.map { Int64($0.timeIntervalSince1970 * 1000) })
    }

    /// Appends an event and updates the current state in the same transaction.
    @discardableResult
    public func append(_ event: ConsentEvent, in tx: some ConsentRepository) throws -> ConsentRecord {
        let head = try tx.consentHead()
        let sequence = (head?.sequence ?? 0) + 1
        let previous = head?.hash ?? Self.genesisHash
        let hash = Hash.blake2b(event.canonicalBytes(sequence: sequence, previousHash: previous)).hexString
        let body = String(decoding: try JSONEncoder.sorted.encode(event), as: UTF8.self)
        try tx.appendConsentEvent(
            StoredConsentEvent(
                sequence: sequence, token: event.token.rawValue, purpose: event.purpose, body: body, previousHash: previous, hash: hash),
            state: ConsentStateRow(
                token: event.token.rawValue, purpose: event.purpose, granted: event.granted, sequence: sequence, expiresAt: event.expiresAt,
                noticeVersion: event.noticeVersion, purposeVersion: event.purposeVersion))
        return ConsentRecord(sequence: sequence, event: event, previousHash: previous, hash: hash)
    }

    /// Records a Global Privacy Control signal: a withdrawal of `marketing`. When a live explicit opt-in exists,
    /// the withdrawal carries `gpcConflict = true` so both stay visible.
    @discardableResult
    public func recordGPC(
        token: SubjectToken, at: Date, sourceApp: String, principal: String, noticeVersion: String, jurisdiction: String,
        in tx: some ConsentRepository
    ) throws -> ConsentRecord {
        var event = try makeEvent(
            token: token, purpose: CorePurpose.marketing.rawValue, granted: false, at: at, sourceApp: sourceApp, principal: principal,
            method: .gpc, noticeVersion: noticeVersion, jurisdiction: jurisdiction)
        let current = try decision(token: token, purpose: CorePurpose.marketing.rawValue, at: at, in: tx)
        event.gpcConflict = current.allowed
        return try append(event, in: tx)
    }

    /// Whether `purpose` may use `token`'s data at `at`.
    public func decision(token: SubjectToken, purpose: String, at: Date, in tx: some ConsentRepository) throws -> ConsentDecision {
        guard let p = policy.purposes[purpose] else { return ConsentDecision(allowed: false, reason: .unknownPurpose) }
        guard p.requiresConsent else { return ConsentDecision(allowed: true, reason: .notConsentBased) }
        return decision(for: try tx.consentState(token: token.rawValue, purpose: purpose), purpose: p, at: at)
    }

    /// The decision a token's state row (nil: none recorded) makes for a purpose based on consent.
    private func decision(for row: ConsentStateRow?, purpose p: Purpose, at: Date) -> ConsentDecision {
        guard let row else { return ConsentDecision(allowed: false, reason: .noRecord) }
        return Self.decide(
            granted: row.granted, expiresAt: row.expiresAt, noticeVersion: row.noticeVersion, purposeVersion: row.purposeVersion,
            purpose: p, policy: policy, at: at)
    }

    /// ``decision(token:purpose:at:in:)`` for many tokens, from one read of their states.
    public func decisions(
        tokens: some Collection<SubjectToken>, purpose: String, at: Date, in tx: some ConsentRepository
    ) throws -> [SubjectToken: ConsentDecision] {
        var out: [SubjectToken: ConsentDecision] = [:]
        guard let p = policy.purposes[purpose], p.requiresConsent else {
            // Decided without a read: an unknown purpose, or one not based on consent.
            for token in tokens { out[token] = try decision(token: token, purpose: purpose, at: at, in: tx) }
            return out
        }
        let rows = try tx.consentStates(tokens: Array(Set(tokens.map(\.rawValue))), purpose: purpose)
        for token in tokens { out[token] = decision(for: rows[token.rawValue], purpose: p, at: at) }
        return out
    }

    /// The decision for a state row: one function for the live path and for ``verify(in:)``'s recomputation.
    static func decide(
        granted: Bool, expiresAt: Int64?, noticeVersion: String, purposeVersion: Int, purpose: Purpose, policy: PolicySet, at: Date
    ) -> ConsentDecision {
        guard granted else { return ConsentDecision(allowed: false, reason: .withdrawn) }
        if let expiresAt, expiresAt <= Int64(at.timeIntervalSince1970 * 1000) {
            return ConsentDecision(allowed: false, reason: .expired)
        }
        // Consent covers the purpose as it was described, under the notice that was shown.
        if purposeVersion < purpose.version { return ConsentDecision(allowed: false, reason: .reconsentRequired) }
        if let since = policy.reconsentSince, noticeVersion < since { return ConsentDecision(allowed: false, reason: .reconsentRequired) }
        return ConsentDecision(allowed: true, reason: .granted, expiresAt: expiresAt)
    }

    /// The purposes whose latest event for `token` is a grant, whatever their decision now (expired, or needing
    /// re-consent): an erasure withdraws them all, so no change of policy can bring one back.
    public func grantedPurposes(token: SubjectToken, in tx: some ConsentRepository) throws -> [String] {
        try tx.grantedConsentPurposes(token: token.rawValue)
    }

    /// Current state per purpose (every purpose of the policy).
    public func state(token: SubjectToken, at: Date, in tx: some ConsentRepository) throws -> [String: ConsentDecision] {
        var out: [String: ConsentDecision] = [:]
        for purpose in policy.purposes.keys { out[purpose] = try decision(token: token, purpose: purpose, at: at, in: tx) }
        return out
    }

    /// Every event of one subject, oldest first, with hashes: the proof of consent (GDPR Art. 7(1)).
    public func history(token: SubjectToken, in tx: some ConsentRepository) throws -> [ConsentRecord] {
        try tx.consentEvents(token: token.rawValue).map(Self.record)
    }

    static func record(_ stored: StoredConsentEvent) throws -> ConsentRecord {
        let event = try JSONDecoder().decode(ConsentEvent.self, from: Data(stored.body.utf8))
        return ConsentRecord(sequence: stored.sequence, event: event, previousHash: stored.previousHash, hash: stored.hash)
    }

    /// The outcome of a chain check.
    public struct Verification: Sendable, Equatable {
        public var events: Int
        /// The first sequence number whose event or link does not verify; nil when intact.
        public var firstBadSequence: Int64?
        public var reason: String?
        /// Subjects' current states that differ from the state the ledger's events give (at most 20 described,
        /// by token and purpose); `stateDifferenceCount` counts them all.
        public var stateDifferences: [String] = []
        public var stateDifferenceCount = 0
        public var intact: Bool { firstBadSequence == nil && stateDifferenceCount == 0 }

        public init(events: Int, firstBadSequence: Int64?, reason: String?) {
            self.events = events
            self.firstBadSequence = firstBadSequence
            self.reason = reason
        }
    }

    /// Recomputes every hash and link. Detects an edited, deleted, inserted or reordered event.
    public func verify(in tx: some ConsentRepository) throws -> Verification {
        var expectedSequence: Int64 = 1
        var previous = Self.genesisHash
        var count = 0
        var expected: [StateKey: ConsentStateRow] = [:]
        var failure: Verification?
        try tx.forEachConsentEvent { stored in
            let seq = stored.sequence
            func bad(_ reason: String) -> Bool {
                failure = Verification(events: count, firstBadSequence: min(seq, expectedSequence), reason: reason)
                return false
            }
            guard seq == expectedSequence else { return bad("sequence gap or reordering: expected \(expectedSequence), found \(seq)") }
            guard stored.previousHash == previous else { return bad("link to the previous event is broken") }
            guard let record = try? Self.record(stored), record.event.token.rawValue == stored.token, record.event.purpose == stored.purpose
            else {
                return bad("event body is unreadable or disagrees with its columns")
            }
            let hash = Hash.blake2b(record.event.canonicalBytes(sequence: seq, previousHash: previous)).hexString
            guard hash == stored.hash else { return bad("event content does not match its hash") }
            previous = hash
            expectedSequence += 1
            count += 1
            let e = record.event
            expected[StateKey(token: e.token.rawValue, purpose: e.purpose)] = ConsentStateRow(
                token: e.token.rawValue, purpose: e.purpose, granted: e.granted, sequence: seq, expiresAt: e.expiresAt,
                noticeVersion: e.noticeVersion, purposeVersion: e.purposeVersion)
            return true
        }
        if let failure { return failure }
        // Every decision reads the current state, so it must be exactly what the (verified) events give: an edit of
        // the state alone, which no trigger can stop, is reported here.
        var result = Verification(events: count, firstBadSequence: nil, reason: nil)
        func differ(_ key: StateKey, _ what: String) {
            result.stateDifferenceCount += 1
            if result.stateDifferences.count < 20 { result.stateDifferences.append("token \(key.token), purpose \(key.purpose): \(what)") }
        }
        var seen = Set<StateKey>()
        try tx.forEachConsentState { actual in
            let key = StateKey(token: actual.token, purpose: actual.purpose)
            seen.insert(key)
            guard let want = expected[key] else { return differ(key, "a state with no event in the ledger") }
            if actual != want { differ(key, "state \(actual) but the ledger's last event (seq \(want.sequence)) gives \(want)") }
        }
        for key in Set(expected.keys).subtracting(seen) { differ(key, "no state although the ledger has events") }
        if result.stateDifferenceCount > 0 {
            result.reason = "the current consent state differs from the ledger in \(result.stateDifferenceCount) place(s)"
        }
        return result
    }

    struct StateKey: Hashable { var token: String; var purpose: String }

    /// Consent events past their expiry become "expired" through ``decision(token:purpose:at:in:)``; this
    /// lists the (token, purpose) pairs that lapsed, for the retention job to act on.
    public func lapsed(at: Date, in tx: some ConsentRepository) throws -> [(SubjectToken, String)] {
        try tx.lapsedConsents(atMillis: Int64(at.timeIntervalSince1970 * 1000)).compactMap { pair in
            SubjectToken(rawValue: pair.token).map { ($0, pair.purpose) }
        }
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }
}
