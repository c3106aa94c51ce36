import Consent
import Foundation
import GRDB
import Storage

/// The consent ledger's tables: append-only events (triggers refuse UPDATE and DELETE) and the current state.
public struct ConsentTables: MigrationSet {
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

extension Database: ConsentRepository {
    public func consentHead() throws -> (sequence: Int64, hash: String)? {
        try Row.fetchOne(self, sql: "SELECT seq, hash FROM consent_events ORDER BY seq DESC LIMIT 1").map { ($0["seq"], $0["hash"]) }
    }

    public func appendConsentEvent(_ e: StoredConsentEvent, state s: ConsentStateRow) throws {
        try execute(
            sql: "INSERT INTO consent_events (seq, token, purpose, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)",
            arguments: [e.sequence, e.token, e.purpose, e.body, e.previousHash, e.hash])
        try execute(
            sql: """
                INSERT INTO consent_state (token, purpose, granted, seq, expires_at, notice_version, purpose_version) VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(token, purpose) DO UPDATE SET granted = excluded.granted, seq = excluded.seq, expires_at = excluded.expires_at,
                    notice_version = excluded.notice_version, purpose_version = excluded.purpose_version
                """,
            arguments: [s.token, s.purpose, s.granted, s.sequence, s.expiresAt, s.noticeVersion, s.purposeVersion])
    }

    public func consentState(token: String, purpose: String) throws -> ConsentStateRow? {
        try Row.fetchOne(
            cachedStatement(
                sql:
                    "SELECT token, purpose, granted, seq, expires_at, notice_version, purpose_version FROM consent_state WHERE token = ? AND purpose = ?"
            ),
            arguments: [token, purpose]
        ).map(Self.consentStateRow)
    }

    public func grantedConsentPurposes(token: String) throws -> [String] {
        try String.fetchAll(
            cachedStatement(sql: "SELECT purpose FROM consent_state WHERE token = ? AND granted = 1 ORDER BY purpose"), arguments: [token])
    }

    public func consentEvents(token: String) throws -> [StoredConsentEvent] {
        try Row.fetchAll(
            cachedStatement(sql: "SELECT seq, token, purpose, body, prev_hash, hash FROM consent_events WHERE token = ? ORDER BY seq"),
            arguments: [token]
        ).map(Self.storedConsentEvent)
    }

    public func forEachConsentEvent(_ body: (StoredConsentEvent) throws -> Bool) throws {
        let cursor = try Row.fetchCursor(self, sql: "SELECT seq, token, purpose, body, prev_hash, hash FROM consent_events ORDER BY seq")
        while let row = try cursor.next() {
            guard try body(Self.storedConsentEvent(row)) else { return }
        }
    }

    public func forEachConsentState(_ body: (ConsentStateRow) throws -> Void) throws {
        let cursor = try Row.fetchCursor(
            self, sql: "SELECT token, purpose, granted, seq, expires_at, notice_version, purpose_version FROM consent_state")
        while let row = try cursor.next() { try body(Self.consentStateRow(row)) }
    }

    public func lapsedConsents(atMillis: Int64) throws -> [(token: String, purpose: String)] {
        try Row.fetchAll(
            cachedStatement(sql: "SELECT token, purpose FROM consent_state WHERE granted = 1 AND expires_at IS NOT NULL AND expires_at <= ?"),
            arguments: [atMillis]
        ).map { ($0["token"], $0["purpose"]) }
    }

    static func storedConsentEvent(_ row: Row) -> StoredConsentEvent {
        StoredConsentEvent(
            sequence: row["seq"], token: row["token"], purpose: row["purpose"], body: row["body"], previousHash: row["prev_hash"], hash: row["hash"])
    }

    static func consentStateRow(_ row: Row) -> ConsentStateRow {
        ConsentStateRow(
            token: row["token"], purpose: row["purpose"], granted: row["granted"], sequence: row["seq"], expiresAt: row["expires_at"],
            noticeVersion: row["notice_version"], purposeVersion: row["purpose_version"])
    }
}
