import Consent
import FeatureStore
import Foundation
import Serving
import Persistence
import Policy
import Pseudonymization
import Recommender
import Storage
import Vault

/// A data subject's rights: a copy of everything held about the person (export) and its erasure (crypto-shredding).
public final class SubjectRights: Sendable {
    let subjects: Subjects
    let ledger: ConsentLedger
    let linker: IdentityLinker
    let identities: IdentityMap
    let keys: SubjectKeys
    let features: FeatureStore
    let deliveries: DeliveryLog
    let store: any OperationalStore
    let policy: PolicySet
    let forgetting: Forgetting
    let cache: RecommendationCache
    let models: ModelRegistry
    let serving: ServingOptions
    let now: @Sendable () -> Date

    init(
        subjects: Subjects, ledger: ConsentLedger, linker: IdentityLinker, identities: IdentityMap, keys: SubjectKeys, features: FeatureStore,
        deliveries: DeliveryLog, store: any OperationalStore, policy: PolicySet, forgetting: Forgetting, cache: RecommendationCache,
        models: ModelRegistry, serving: ServingOptions, now: @escaping @Sendable () -> Date
    ) {
        self.subjects = subjects
        self.ledger = ledger
        self.linker = linker
        self.identities = identities
        self.keys = keys
        self.features = features
        self.deliveries = deliveries
        self.store = store
        self.policy = policy
        self.forgetting = forgetting
        self.cache = cache
        self.models = models
        self.serving = serving
        self.now = now
    }

    public func erase(subject: String, principal: Principal, note: AuditNote) async throws -> [String: Any] {
        let token = try await subjects.token(for: subject, principal: principal)
        note.update { $0.subjectToken = token.rawValue }
        let at = now()
        // Three steps, because the data file and the key store do not commit atomically together, and each step
        // leaves a state a retry completes: (1) on the record, every grant of every token of the person is withdrawn
        // (whatever its decision now, so no policy change revives one); (2) their keys are shredded, in the key
        // store alone, so nothing left can be opened; (3) their rows, deliveries, match keys and links go.
        let person = try await store.write { db -> [SubjectToken] in
            let person = try linker.person(of: token, in: db)
            for member in person {
                // A purpose the policy no longer names is never allowed (and the ledger cannot record an event for it).
                for purpose in try ledger.grantedPurposes(token: member, in: db) where policy.purposes[purpose]?.requiresConsent == true {
                    let event = try ledger.makeEvent(
                        token: member, purpose: purpose, granted: false, at: at, sourceApp: principal.namespace,
                        principal: principal.name, method: .api, noticeVersion: policy.currentNotice,
                        jurisdiction: ConsentLedger.unspecifiedJurisdiction)
                    try ledger.append(event, in: db)
                }
            }
            try db.announce(person.map { .subject(token: $0.rawValue) })
            return person
        }
        try await forgetting.uncountAnonymous(person)
        try await forgetting.shredKeys(person.flatMap { [FeatureStore.keyOwner($0), IdentityMap.keyOwner($0)] }, of: person)
        // Unreadable from here: forgotten by the models and queued for unlearning now, whatever fails next.
        forgetting.forgetInModels(person, unlearn: true)
        let deleted = try await store.write { db -> Int in
            var rows = 0
            for member in person {
                rows += try features.deleteRows(member, in: db)
                try identities.deleteRow(member, in: db)
                try deliveries.erase(member, in: db)
                try linker.erase(member, in: db)
            }
            try db.announce(person.map { .forgotten(token: $0.rawValue, unlearn: true) } + [.links])
            return rows
        }
        for member in person { cache.drop(token: member.rawValue) }
        cache.drop(token: token.rawValue)
        cache.forgetLinks()
        try await store.syncCommitted()
        // An erasure answers only once nothing of the subject is left in the files, WAL included.
        guard await forgetting.scrubWAL(after: "erasure") else { throw CoreError.erasureNotScrubbed }
        return ["erased": true, "rows_deleted": deleted, "completed_at": ISO8601DateFormatter().string(from: at)]
    }

    public struct Export: Encodable, Sendable {
        public var token: String
        public var consents: [ConsentRecord]
        public var interactions: [StoredInteraction]
        var profile: [String: String]?
        /// Values the model inferred about the subject: listed so the subject sees them, never as facts.
        var imputed: [Imputed]
        var has_data: Bool

        struct Imputed: Encodable {
            var field: String
            var value: String
            var method: String
            var support: Float
            var is_fact = false
        }
    }

    public func export(subject: String, principal: Principal, note: AuditNote) async throws -> Export {
        let token = try await subjects.token(for: subject, principal: principal)
        note.update { $0.subjectToken = token.rawValue }
        return try await store.read { db in
            // Everything of the person, as erasure reaches it: rows written under linked tokens before their link too.
            let person = try linker.person(of: token, in: db)
            let interactions = try person.flatMap { try features.interactions(of: $0, in: db) }.sorted { $0.time < $1.time }
            let profile = try features.profile(of: token, in: db)
            let consents = try person.flatMap { try ledger.history(token: $0, in: db) }.sorted { $0.sequence < $1.sequence }
            // Inferences live in the current model only; a subject whose data is gone has none.
            let guess = interactions.isEmpty ? nil : models.model?.imputedAgeBands[token.rawValue]
            let imputed =
                guess.map {
                    [
                        Export.Imputed(
                            field: "age_band", value: $0.value,
                            method:
                                "k-nearest neighbours over behaviour (k=\(serving.imputationNeighbours), among up to \(serving.imputationReferences) subjects who gave one)",
                            support: $0.support)
                    ]
                } ?? []
            return Export(
                token: token.rawValue, consents: consents, interactions: interactions, profile: profile,
                imputed: imputed, has_data: !interactions.isEmpty || profile != nil)
        }
    }
}
