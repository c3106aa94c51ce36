import Foundation
import GRDB
import SQLiteStorage
import Policy
import Storage
import Testing
@testable import Consent

let policiesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Policies").path

struct LedgerFixture {
    let store: Store
    let ledger: ConsentLedger
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "veil-consent-\(UUID().uuidString)/veil.sqlite"
        store = try Store(path: path, migrations: [ConsentTables()])
        ledger = ConsentLedger(policy: try PolicyParser.load(directory: policiesDirectory))
    }

    func token(_ n: Int) -> SubjectToken { SubjectToken(rawValue: String(format: "%032x", n))! }

    @discardableResult
    func record(
        _ n: Int, _ purpose: String, _ granted: Bool, at: Date = Date(), expires: Date? = nil, method: ConsentMethod = .banner
    ) throws -> ConsentRecord {
        let event = try ledger.makeEvent(
            token: token(n), purpose: purpose, granted: granted, at: at, sourceApp: "shop", principal: "shop-app",
            method: method, noticeVersion: "2026-01", jurisdiction: "EU", expiresAt: expires)
        return try store.pool.write { try ledger.append(event, in: $0) }
    }

    func decision(_ n: Int, _ purpose: String, at: Date = Date()) throws -> ConsentDecision {
        try store.pool.read { try ledger.decision(token: token(n), purpose: purpose, at: at, in: $0) }
    }
}

@Suite struct ConsentLedgerTests {
    @Test func defaultIsNoConsentForConsentBasedPurposes() throws {
        let f = try LedgerFixture()
        #expect(try f.decision(1, "personalization") == ConsentDecision(allowed: false, reason: .noRecord))
        #expect(try f.decision(1, "marketing").allowed == false)
        #expect(try f.decision(1, "essential") == ConsentDecision(allowed: true, reason: .notConsentBased))
        #expect(try f.decision(1, "mind-reading") == ConsentDecision(allowed: false, reason: .unknownPurpose))
    }

    @Test func grantThenWithdrawFollowsTheLastEvent() throws {
        let f = try LedgerFixture()
        try f.record(1, "personalization", true)
        #expect(try f.decision(1, "personalization").allowed)
        try f.record(1, "personalization", false)
        #expect(try f.decision(1, "personalization") == ConsentDecision(allowed: false, reason: .withdrawn))
        #expect(try f.decision(2, "personalization").allowed == false)
    }

    @Test func consentLapsesAtItsExpiry() throws {
        let f = try LedgerFixture()
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        try f.record(1, "personalization", true, at: now, expires: now.addingTimeInterval(3600))
        #expect(try f.decision(1, "personalization", at: now.addingTimeInterval(3599)).allowed)
        #expect(try f.decision(1, "personalization", at: now.addingTimeInterval(3600)) == ConsentDecision(allowed: false, reason: .expired))
        #expect(try f.store.pool.read { try f.ledger.lapsed(at: now.addingTimeInterval(7200), in: $0) }.count == 1)
    }

    @Test func unknownNoticeOrPurposeIsRefusedAndNothingIsWritten() throws {
        let f = try LedgerFixture()
        #expect(throws: ConsentError(.unknownNotice, "")) {
            try f.ledger.makeEvent(
                token: f.token(1), purpose: "personalization", granted: true, at: Date(), sourceApp: "s", principal: "p", method: .api,
                noticeVersion: "1999-01", jurisdiction: "EU")
        }
        #expect(throws: ConsentError(.unknownPurpose, "")) {
            try f.ledger.makeEvent(
                token: f.token(1), purpose: "telepathy", granted: true, at: Date(), sourceApp: "s", principal: "p", method: .api,
                noticeVersion: "2026-01", jurisdiction: "EU")
        }
        #expect(throws: ConsentError(.invalid, "")) {
            try f.ledger.makeEvent(
                token: f.token(1), purpose: "personalization", granted: true, at: Date(), sourceApp: "s", principal: "p", method: .api,
                noticeVersion: "2026-01", jurisdiction: "")
        }
        #expect(try f.store.pool.read { try f.ledger.verify(in: $0) }.events == 0)
    }

    @Test func recordStoresTheNoticeHashFromThePolicy() throws {
        let f = try LedgerFixture()
        let receipt = try f.record(1, "personalization", true)
        #expect(receipt.event.noticeHash == f.ledger.policy.notices["2026-01"]!.hash)
        #expect(receipt.event.lawfulBasis == "consent")
        #expect(receipt.hash.count == 64)
    }

    @Test func gpcWithdrawsMarketingAndRecordsAConflictWithAnExplicitOptIn() throws {
        let f = try LedgerFixture()
        try f.record(1, "marketing", true)
        let gpc = try f.store.pool.write {
            try f.ledger.recordGPC(
                token: f.token(1), at: Date(), sourceApp: "shop", principal: "shop-app", noticeVersion: "2026-01", jurisdiction: "us_ca", in: $0)
        }
        #expect(gpc.event.method == .gpc)
        #expect(gpc.event.gpcConflict)
        #expect(try f.decision(1, "marketing").allowed == false)
        let history = try f.store.pool.read { try f.ledger.history(token: f.token(1), in: $0) }
        #expect(history.map(\.event.granted) == [true, false])
        // Without an opt-in there is nothing to conflict with.
        let plain = try f.store.pool.write {
            try f.ledger.recordGPC(
                token: f.token(2), at: Date(), sourceApp: "shop", principal: "shop-app", noticeVersion: "2026-01", jurisdiction: "us_ca", in: $0)
        }
        #expect(!plain.event.gpcConflict)
    }

    @Test func historyIsTheProofWithHashesInOrder() throws {
        let f = try LedgerFixture()
        try f.record(1, "personalization", true)
        try f.record(2, "personalization", true)
        try f.record(1, "marketing", true, method: .settings)
        let history = try f.store.pool.read { try f.ledger.history(token: f.token(1), in: $0) }
        #expect(history.map(\.sequence) == [1, 3])
        #expect(history[1].previousHash != history[0].hash)  // chain runs through subject 2's event
        #expect(history[1].event.method == .settings)
    }

    @Test(arguments: ["edit", "delete", "reorder"])
    func tamperingIsCaughtByVerify(_ kind: String) throws {
        let f = try LedgerFixture()
        for n in 1...6 { try f.record(n, "personalization", n % 2 == 0) }
        #expect(try f.store.pool.read { try f.ledger.verify(in: $0) }.intact)
        let queue = try DatabaseQueue(path: f.path)
        try queue.writeWithoutTransaction { db in
            try db.execute(sql: "DROP TRIGGER consent_events_no_update; DROP TRIGGER consent_events_no_delete")
            switch kind {
            case "edit": try db.execute(sql: "UPDATE consent_events SET body = replace(body, '\"granted\":true', '\"granted\":false') WHERE seq = 4")
            case "delete": try db.execute(sql: "DELETE FROM consent_events WHERE seq = 4")
            default:
                try db.execute(sql: "UPDATE consent_events SET seq = -1 WHERE seq = 4")
                try db.execute(sql: "UPDATE consent_events SET seq = 4 WHERE seq = 5")
                try db.execute(sql: "UPDATE consent_events SET seq = 5 WHERE seq = -1")
            }
        }
        let result = try f.store.pool.read { try f.ledger.verify(in: $0) }
        #expect(result.firstBadSequence == 4, "\(result.reason ?? "")")
    }

    /// Issue #21, item 5: the ledger itself refuses a grant without a jurisdiction (the gateway used to fill in
    /// "unspecified"); a withdrawal is never refused for lacking one.
    @Test func aGrantNeedsAJurisdictionAWithdrawalDoesNot() throws {
        let f = try LedgerFixture()
        for missing in ["", ConsentLedger.unspecifiedJurisdiction] {
            #expect(throws: ConsentError.self) {
                try f.ledger.makeEvent(
                    token: f.token(1), purpose: "personalization", granted: true, at: Date(), sourceApp: "shop", principal: "p",
                    method: .banner, noticeVersion: "2026-01", jurisdiction: missing)
            }
        }
        _ = try f.ledger.makeEvent(
            token: f.token(1), purpose: "personalization", granted: false, at: Date(), sourceApp: "shop", principal: "p",
            method: .banner, noticeVersion: "2026-01", jurisdiction: ConsentLedger.unspecifiedJurisdiction)
        // The ledger keeps it in clear and forever: a code only, never free text.
        for code in ["EU", "DE", "US-CA", "us_ca", "GB-ENG"] { #expect(ConsentLedger.isJurisdictionCode(code), "\(code)") }
        for text in ["jane@example.com", "E", "EUROPE", "US-", "US-CALI", "1A", "de ca"] {
            #expect(throws: ConsentError.self, "\(text)") {
                try f.ledger.makeEvent(
                    token: f.token(1), purpose: "personalization", granted: true, at: Date(), sourceApp: "shop", principal: "p",
                    method: .banner, noticeVersion: "2026-01", jurisdiction: text)
            }
        }
    }

    /// Item 5: consent given under a notice older than one that requires re-consent, or under an older version of
    /// the purpose, no longer allows it; consent given again under the current ones does.
    @Test func aNoticeRequiringReconsentOrANewPurposeVersionEndsOlderConsent() throws {
        let f = try LedgerFixture()
        try f.record(1, "personalization", true)
        try f.record(2, "marketing", true)
        var files = try PolicyParser.Files.read(directory: policiesDirectory)
        // Windows line ends and a byte order mark must not hide the rule.
        files.notices["2026-06"] = Array("\u{FEFF}---\r\nrequires_reconsent: true\r\n---\r\n# Personalization notice (version 2026-06)\r\n".utf8)
        let reconsent = ConsentLedger(policy: try PolicyParser.parse(files))
        let decide = { (ledger: ConsentLedger, n: Int, purpose: String) in
            try f.store.pool.read { try ledger.decision(token: f.token(n), purpose: purpose, at: Date(), in: $0) }
        }
        #expect(try decide(f.ledger, 1, "personalization").allowed)
        #expect(try decide(reconsent, 1, "personalization") == ConsentDecision(allowed: false, reason: .reconsentRequired))
        let again = try reconsent.makeEvent(
            token: f.token(1), purpose: "personalization", granted: true, at: Date(), sourceApp: "shop",
            principal: "p", method: .banner, noticeVersion: "2026-06", jurisdiction: "EU")
        try f.store.pool.write { _ = try reconsent.append(again, in: $0) }
        #expect(try decide(reconsent, 1, "personalization").allowed)
        // A notice that does not ask for re-consent leaves earlier consent standing.
        files.notices["2026-06"] = Array("# a wording fix\n".utf8)
        #expect(try decide(ConsentLedger(policy: try PolicyParser.parse(files)), 2, "marketing").allowed)
        // A new version of the purpose ends consent given to the old one.
        files = try PolicyParser.Files.read(directory: policiesDirectory)
        let marked = files.purposes.replacingOccurrences(of: "name: marketing\n    version: 1", with: "name: marketing\n    version: 2")
        #expect(marked != files.purposes, "the purposes file changed its layout; update this test")
        files.purposes = marked
        #expect(
            try decide(ConsentLedger(policy: try PolicyParser.parse(files)), 2, "marketing")
                == ConsentDecision(allowed: false, reason: .reconsentRequired))
    }

    /// Item 8: the state every decision reads is recomputed from the ledger by verify; editing it alone is found.
    @Test func verifyFindsAConsentStateEditedBehindTheLedgersBack() throws {
        let f = try LedgerFixture()
        try f.record(1, "personalization", true)
        try f.record(1, "personalization", false)
        try f.record(2, "personalization", true)
        #expect(try f.store.pool.read { try f.ledger.verify(in: $0) }.intact)
        // Turn the withdrawal back into a grant in the state table only: decisions now say yes.
        try f.store.pool.write { try $0.execute(sql: "UPDATE consent_state SET granted = 1 WHERE token = ?", arguments: [f.token(1).rawValue]) }
        #expect(try f.decision(1, "personalization").allowed)
        var result = try f.store.pool.read { try f.ledger.verify(in: $0) }
        #expect(!result.intact && result.stateDifferenceCount == 1 && result.firstBadSequence == nil)
        #expect(result.stateDifferences.first?.contains(f.token(1).rawValue) == true)
        // A state row deleted, and one invented for a subject with no event, are found too.
        try f.store.pool.write { db in
            try db.execute(sql: "DELETE FROM consent_state WHERE token = ?", arguments: [f.token(2).rawValue])
            try db.execute(
                sql:
                    "INSERT INTO consent_state (token, purpose, granted, seq, notice_version, purpose_version) VALUES (?, 'marketing', 1, 1, '2026-01', 1)",
                arguments: [f.token(3).rawValue])
        }
        result = try f.store.pool.read { try f.ledger.verify(in: $0) }
        #expect(result.stateDifferenceCount == 3)
    }
}
