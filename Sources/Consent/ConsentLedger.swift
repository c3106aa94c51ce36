import Foundation
import GRDB
import Policy
import Storage
import Vault

/// The append-only, hash-chained consent ledger and the current state derived from it.
///
/// Each event's hash covers its content, its sequence number and the previous event's hash, so an edited,
/// deleted, inserted or reordered event breaks the chain at that point (see ``verify(in:)``).
/// Consent-based purposes default to "no consent".
public struct ConsentLedger: Sendable {
    public struct Migrations: MigrationSet {
        public init() {}
        public func register(in migrator: inout DatabaseMigrator) {
            migrator.registerMigration("consent.v1.ledger") { db in
                try db.execute(
                    sql: """
                        CREATE TABLE consent_events (
                            seq INTEGER PRIMARY KEY,
                            token TEXT NOT NULL,
                            purpose TEXT NOT NULL,
                            body TEXT NOT NULL,
                            prev_hash TEXT NOT NULL,
                            hash TEXT NOT NULL
                        );
                        CREATE INDEX consent_events_token ON consent_events(token, seq);
                        CREATE TABLE consent_state (
                            token TEXT NOT NULL,
                            purpose TEXT NOT NULL,
                            granted INTEGER NOT NULL,
                            seq INTEGER NOT NULL,
                            expires_at INTEGER,
                            PRIMARY KEY (token, purpose)
                        ) WITHOUT ROWID;
                        CREATE TRIGGER consent_events_no_update BEFORE UPDATE ON consent_events
                            BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END;
                        CREATE TRIGGER consent_events_no_delete BEFORE DELETE ON consent_events
                            BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END;
                        """)
            }
            // The state remembers under which notice and purpose version consent was given, so that a notice that
            // requires re-consent, or a new version of the purpose, ends it.
            migrator.registerMigration("consent.v2.state_versions") { db in
                try db.execute(
                    sql: """
                        ALTER TABLE consent_state ADD COLUMN notice_version TEXT NOT NULL DEFAULT '';
                        ALTER TABLE consent_state ADD COLUMN purpose_version INTEGER NOT NULL DEFAULT 0;
                        UPDATE consent_state SET
                            notice_version = (SELECT json_extract(body, '$.noticeVersion') FROM consent_events e WHERE e.seq = consent_state.seq),
                            purpose_version = (SELECT json_extract(body, '$.purposeVersion') FROM consent_events e WHERE e.seq = consent_state.seq);
                        """)
            }
        }
    }

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
    public func append(_ event: ConsentEvent, in db: Database) throws -> ConsentRecord {
        let head = try Row.fetchOne(db, sql: "SELECT seq, hash FROM consent_events ORDER BY seq DESC LIMIT 1")
        let sequence: Int64 = (head?["seq"] ?? 0) + 1
        let previous: String = head?["hash"] ?? Self.genesisHash
        let hash = Hash.blake2b(event.canonicalBytes(sequence: sequence, previousHash: previous)).hexString
        let body = String(decoding: try JSONEncoder.sorted.encode(event), as: UTF8.self)
        try db.execute(
            sql: "INSERT INTO consent_events (seq, token, purpose, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)",
            arguments: [sequence, event.token.rawValue, event.purpose, body, previous, hash])
        try db.execute(
            sql: """
                INSERT INTO consent_state (token, purpose, granted, seq, expires_at, notice_version, purpose_version) VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(token, purpose) DO UPDATE SET granted = excluded.granted, seq = excluded.seq, expires_at = excluded.expires_at,
                    notice_version = excluded.notice_version, purpose_version = excluded.purpose_version
                """,
            arguments: [event.token.rawValue, event.purpose, event.granted, sequence, event.expiresAt, event.noticeVersion, event.purposeVersion])
        return ConsentRecord(sequence: sequence, event: event, previousHash: previous, hash: hash)
    }

    /// Records a Global Privacy Control signal: a withdrawal of `marketing`. When a live explicit opt-in exists,
    /// the withdrawal carries `gpcConflict = true` so both stay visible.
    @discardableResult
    public func recordGPC(
        token: SubjectToken, at: Date, sourceApp: String, principal: String, noticeVersion: String, jurisdiction: String, in db: Database
    ) throws -> ConsentRecord {
        var event = try makeEvent(
            token: token, purpose: "marketing", granted: false, at: at, sourceApp: sourceApp, principal: principal,
            method: .gpc, noticeVersion: noticeVersion, jurisdiction: jurisdiction)
        let current = try decision(token: token, purpose: "marketing", at: at, in: db)
        event.gpcConflict = current.allowed
        return try append(event, in: db)
    }

    /// Whether `purpose` may use `token`'s data at `at`.
    public func decision(token: SubjectToken, purpose: String, at: Date, in db: Database) throws -> ConsentDecision {
        guard let p = policy.purposes[purpose] else { return ConsentDecision(allowed: false, reason: .unknownPurpose) }
        guard p.requiresConsent else { return ConsentDecision(allowed: true, reason: .notConsentBased) }
        guard
            let row = try Row.fetchOne(
                db.cachedStatement(
                    sql: "SELECT granted, expires_at, notice_version, purpose_version FROM consent_state WHERE token = ? AND purpose = ?"),
                arguments: [token.rawValue, purpose])
        else {
            return ConsentDecision(allowed: false, reason: .noRecord)
        }
        return Self.decide(
            granted: row["granted"], expiresAt: row["expires_at"], noticeVersion: row["notice_version"], purposeVersion: row["purpose_version"],
            purpose: p, policy: policy, at: at)
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
    public func grantedPurposes(token: SubjectToken, in db: Database) throws -> [String] {
        try String.fetchAll(
            db.cachedStatement(sql: "SELECT purpose FROM consent_state WHERE token = ? AND granted = 1 ORDER BY purpose"),
            arguments: [token.rawValue])
    }

    /// Current state per purpose (every purpose of the policy).
    public func state(token: SubjectToken, at: Date, in db: Database) throws -> [String: ConsentDecision] {
        var out: [String: ConsentDecision] = [:]
        for purpose in policy.purposes.keys { out[purpose] = try decision(token: token, purpose: purpose, at: at, in: db) }
        return out
    }

    /// Every event of one subject, oldest first, with hashes: the proof of consent (GDPR Art. 7(1)).
    public func history(token: SubjectToken, in db: Database) throws -> [ConsentRecord] {
        try Row.fetchAll(
            db.cachedStatement(sql: "SELECT seq, body, prev_hash, hash FROM consent_events WHERE token = ? ORDER BY seq"), arguments: [token.rawValue]
        ).map(Self.record)
    }

    static func record(_ row: Row) throws -> ConsentRecord {
        let body: String = row["body"]
        let event = try JSONDecoder().decode(ConsentEvent.self, from: Data(body.utf8))
        return ConsentRecord(sequence: row["seq"], event: event, previousHash: row["prev_hash"], hash: row["hash"])
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
    public func verify(in db: Database) throws -> Verification {
        var expectedSequence: Int64 = 1
        var previous = Self.genesisHash
        var count = 0
        var expected: [StateKey: StateRow] = [:]
        let cursor = try Row.fetchCursor(db, sql: "SELECT seq, token, purpose, body, prev_hash, hash FROM consent_events ORDER BY seq")
        while let row = try cursor.next() {
            let seq: Int64 = row["seq"]
            func bad(_ reason: String) -> Verification { Verification(events: count, firstBadSequence: min(seq, expectedSequence), reason: reason) }
            guard seq == expectedSequence else { return bad("sequence gap or reordering: expected \(expectedSequence), found \(seq)") }
            guard (row["prev_hash"] as String) == previous else { return bad("link to the previous event is broken") }
            guard let record = try? Self.record(row),
                record.event.token.rawValue == (row["token"] as String), record.event.purpose == (row["purpose"] as String)
            else {
                return bad("event body is unreadable or disagrees with its columns")
            }
            let hash = Hash.blake2b(record.event.canonicalBytes(sequence: seq, previousHash: previous)).hexString
            guard hash == (row["hash"] as String) else { return bad("event content does not match its hash") }
            previous = hash
            expectedSequence += 1
            count += 1
            let e = record.event
            expected[StateKey(token: e.token.rawValue, purpose: e.purpose)] = StateRow(
                granted: e.granted, seq: seq, expiresAt: e.expiresAt,
                noticeVersion: e.noticeVersion, purposeVersion: e.purposeVersion)
        }
        // Every decision reads `consent_state`, so it must be exactly what the (verified) events give: an edit of
        // that table alone, which no trigger can stop, is reported here.
        var result = Verification(events: count, firstBadSequence: nil, reason: nil)
        func differ(_ key: StateKey, _ what: String) {
            result.stateDifferenceCount += 1
            if result.stateDifferences.count < 20 { result.stateDifferences.append("token \(key.token), purpose \(key.purpose): \(what)") }
        }
        let stored = try Row.fetchCursor(
            db, sql: "SELECT token, purpose, granted, seq, expires_at, notice_version, purpose_version FROM consent_state")
        var seen = Set<StateKey>()
        while let row = try stored.next() {
            let key = StateKey(token: row["token"], purpose: row["purpose"])
            seen.insert(key)
            let actual = StateRow(
                granted: row["granted"], seq: row["seq"], expiresAt: row["expires_at"], noticeVersion: row["notice_version"],
                purposeVersion: row["purpose_version"])
            guard let want = expected[key] else { differ(key, "a state with no event in the ledger"); continue }
            if actual != want { differ(key, "state \(actual) but the ledger's last event (seq \(want.seq)) gives \(want)") }
        }
        for key in Set(expected.keys).subtracting(seen) { differ(key, "no state although the ledger has events") }
        if result.stateDifferenceCount > 0 {
            result.reason = "the current consent state differs from the ledger in \(result.stateDifferenceCount) place(s)"
        }
        return result
    }

    struct StateKey: Hashable { var token: String; var purpose: String }
    struct StateRow: Equatable, CustomStringConvertible {
        var granted: Bool, seq: Int64, expiresAt: Int64?, noticeVersion: String, purposeVersion: Int
        var description: String {
            "granted=\(granted) seq=\(seq) expires=\(expiresAt.map(String.init) ?? "-") notice=\(noticeVersion) purpose_version=\(purposeVersion)"
        }
    }

    /// Consent events past their expiry become "expired" through ``decision(token:purpose:at:in:)``; this
    /// lists the (token, purpose) pairs that lapsed, for the retention job to act on.
    public func lapsed(at: Date, in db: Database) throws -> [(SubjectToken, String)] {
        try Row.fetchAll(
            db.cachedStatement(sql: "SELECT token, purpose FROM consent_state WHERE granted = 1 AND expires_at IS NOT NULL AND expires_at <= ?"),
            arguments: [Int64(at.timeIntervalSince1970 * 1000)]
        ).compactMap { row in
            SubjectToken(rawValue: row["token"]).map { ($0, row["purpose"]) }
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
