import Consent
import FeatureStore
import Foundation
import Persistence
import Policy
import Prometheus
import Pseudonymization
import Storage
import Vault

/// Consent decisions: recorded in the ledger (a withdrawal of personalization shreds the person's behaviour data
/// before it returns), read back as state and history, and the ledger's chain verified.
public final class ConsentService: Sendable {
    let subjects: Subjects
    let ledger: ConsentLedger
    let identities: IdentityMap
    let keys: SubjectKeys
    let features: FeatureStore
    let store: any OperationalStore
    let policy: PolicySet
    let forgetting: Forgetting
    let cache: RecommendationCache
    let metrics: VeilMetrics
    let now: @Sendable () -> Date

    init(
        subjects: Subjects, ledger: ConsentLedger, identities: IdentityMap, keys: SubjectKeys, features: FeatureStore,
        store: any OperationalStore, policy: PolicySet, forgetting: Forgetting, cache: RecommendationCache, metrics: VeilMetrics,
        now: @escaping @Sendable () -> Date
    ) {
        self.subjects = subjects
        self.ledger = ledger
        self.identities = identities
        self.keys = keys
        self.features = features
        self.store = store
        self.policy = policy
        self.forgetting = forgetting
        self.cache = cache
        self.metrics = metrics
        self.now = now
    }

    public struct ConsentRequest: Decodable, Sendable {
        public var subject: String
        public var purpose: String?
        public var granted: Bool?
        public var method: String?
        public var notice_version: String
        public var jurisdiction: String?
        public var expires_at: Date?
        public var gpc: Bool?
    }

    /// Records a consent decision (and a GPC signal when present) in one transaction. A withdrawal of
    /// personalization shreds the subject's behaviour data before this returns. Like `ingest`, the transaction runs
    /// on the writer's queue while the request's task is suspended.
    public func record(_ request: ConsentRequest, principal: Principal, gpcHeader: Bool, note: AuditNote) async throws -> ConsentReceipt {
        let token = try await subjects.token(for: request.subject, principal: principal)
        // The audit log keeps only values from closed sets: an unknown purpose is client text (it held an e-mail
        // address in a 200 KB field once), recorded as a fixed marker.
        let auditedPurpose = request.purpose.map { policy.purposes[$0] == nil ? AuditNote.unrecognized : $0 }
        note.update {
            $0.subjectToken = token.rawValue; $0.purpose = auditedPurpose
        }
        let gpc = gpcHeader || request.gpc == true
        let at = now()
        // A grant without a jurisdiction is refused by the ledger (422); a withdrawal or GPC signal never is.
        let jurisdiction = request.jurisdiction ?? ConsentLedger.unspecifiedJurisdiction
        var event: ConsentEvent?
        if let purpose = request.purpose {
            guard let granted = request.granted else { throw CoreError.invalid("'granted' (true or false) is required with 'purpose'") }
            guard let method = ConsentMethod(rawValue: request.method ?? "api") else {
                throw CoreError.unprocessable(
                    "unknown method '\(request.method ?? "")'; use \(ConsentMethod.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            // A page records what its visitor chose there; imports and GPC signals (gpc: true) are other paths.
            if principal.isBrowser, method != .banner, method != .settings {
                throw CoreError.unprocessable("a browser key records choices made on the page: method banner or settings")
            }
            // The ledger refuses an unknown purpose or notice, or a malformed value: a ConsentError the edge maps to 422.
            event = try ledger.makeEvent(
                token: token, purpose: purpose, granted: granted, at: at, sourceApp: principal.namespace,
                principal: principal.name, method: method, noticeVersion: request.notice_version,
                jurisdiction: jurisdiction, expiresAt: request.expires_at)
        } else if !gpc {
            throw CoreError.invalid("'purpose' and 'granted' are required (or 'gpc': true)")
        } else if policy.notices[request.notice_version] == nil {
            throw CoreError.unprocessable("unknown notice version '\(request.notice_version)'")
        }
        let shredNeeded = event.map { $0.purpose == CorePurpose.personalization.rawValue && !$0.granted } ?? false
        let change = event
        // The key store is written on its own, before the data file: the identity key this transaction seals with is
        // created first, and a withdrawal shreds the person's keys (every linked token's) before its rows go.
        try await keys.ensureKeys([IdentityMap.keyOwner(token)], in: store)
        let person = shredNeeded ? try await subjects.person(of: token) : []
        if shredNeeded {
            try await forgetting.uncountAnonymous(person)
            try await forgetting.shredKeys(person.map(FeatureStore.keyOwner), of: person)
            // Unreadable from here: forgotten by the models and queued for unlearning now, whatever fails next.
            forgetting.forgetInModels(person.isEmpty ? [token] : person, unlearn: true)
        }
        // What the other gateways on a shared database must forget, sent when (and only if) this commits.
        let withdrawn = change?.granted == false || gpc
        let announced: [Invalidation] =
            shredNeeded
            ? (person.isEmpty ? [token] : person).map { .forgotten(token: $0.rawValue, unlearn: true) }
            : [withdrawn ? .forgotten(token: token.rawValue, unlearn: false) : .subject(token: token.rawValue)]
        let receipt = try await store.write { db -> ConsentRecord in
            try identities.remember(subject: request.subject, token: token, in: db)
            var last: ConsentRecord?
            if gpc {
                last = try ledger.recordGPC(
                    token: token, at: at, sourceApp: principal.namespace, principal: principal.name,
                    noticeVersion: request.notice_version, jurisdiction: jurisdiction, in: db)
            }
            if let change { last = try ledger.append(change, in: db) }
            for member in person { try features.deleteRows(member, in: db) }
            try db.announce(announced)
            return last!
        }
        // Queued again now that the withdrawal and the deletion committed: a retrain that read its snapshot between the
        // shred and this commit (an event stored meanwhile under a new key) cannot settle them.
        if shredNeeded { forgetting.forgetInModels(person.isEmpty ? [token] : person, unlearn: true) }
        cache.drop(token: token.rawValue)
        for member in person { cache.drop(token: member.rawValue) }
        // Any other withdrawal (GPC withdraws marketing): the bandits' exposures and the models' inferences about them go.
        if !shredNeeded && withdrawn { forgetting.forgetInModels([token], unlearn: false) }
        if shredNeeded { await forgetting.scrubWAL(after: "consent withdrawal") }
        // Acknowledged only once it survives a power cut (the store commits without a sync; events may).
        try await store.syncCommitted()
        metrics.consents.increment()
        return ConsentReceipt(
            sequence: receipt.sequence, hash: receipt.hash, previous_hash: receipt.previousHash, purpose: receipt.event.purpose,
            granted: receipt.event.granted, notice_version: receipt.event.noticeVersion, notice_hash: receipt.event.noticeHash,
            gpc_conflict: receipt.event.gpcConflict)
    }

    public func state(subject: String, principal: Principal, note: AuditNote) async throws -> [String: Any] {
        let token = try await subjects.token(for: subject, principal: principal)
        note.update { $0.subjectToken = token.rawValue }
        let state = try await store.read { try ledger.state(token: token, at: now(), in: $0) }
        return ["purposes": state.mapValues { ["allowed": $0.allowed, "reason": $0.reason.rawValue] }]
    }

    public func history(subject: String, principal: Principal, note: AuditNote) async throws -> [ConsentRecord] {
        let token = try await subjects.token(for: subject, principal: principal)
        note.update { $0.subjectToken = token.rawValue }
        return try await store.read { try ledger.history(token: token, in: $0) }
    }

    /// Recomputes the consent ledger's hash chain.
    public func verifyLedger() async throws -> ConsentLedger.Verification {
        try await store.read { try ledger.verify(in: $0) }
    }
}
