import Audit
import Consent
import FeatureStore
import Foundation
import Persistence
import Policy
import Storage

/// The retention job: behaviour data older than the personalization purpose's retention goes, delivery fingerprints
/// are forgotten, and subjects whose consent lapsed are shredded.
public final class Retention: Sendable {
    let ledger: ConsentLedger
    let keys: SubjectKeys
    let features: FeatureStore
    let deliveries: DeliveryLog
    let deliveryKeys: DeliveryKeying
    let store: any OperationalStore
    let policy: PolicySet
    let forgetting: Forgetting
    let cache: RecommendationCache
    let audit: any AuditTrail
    let now: @Sendable () -> Date

    init(
        ledger: ConsentLedger, keys: SubjectKeys, features: FeatureStore, deliveries: DeliveryLog, deliveryKeys: DeliveryKeying,
        store: any OperationalStore, policy: PolicySet, forgetting: Forgetting, cache: RecommendationCache, audit: any AuditTrail,
        now: @escaping @Sendable () -> Date
    ) {
        self.ledger = ledger
        self.keys = keys
        self.features = features
        self.deliveries = deliveries
        self.deliveryKeys = deliveryKeys
        self.store = store
        self.policy = policy
        self.forgetting = forgetting
        self.cache = cache
        self.audit = audit
        self.now = now
    }

    public struct RetentionReport: Sendable, Equatable, Codable {
        public var interactionsDeleted: Int
        public var deliveriesDeleted: Int
        public var lapsedConsentsShredded: Int
    }

    /// Deletes behaviour data older than the personalization purpose's retention, forgets old delivery
    /// fingerprints, and shreds the data of subjects whose personalization consent lapsed. Audited.
    @discardableResult
    public func run() async throws -> RetentionReport {
        let report = try await sweep()
        try await audit.append(
            AuditRecord(
                actor: "retention", role: Role.system, action: SystemAction.retentionRun.rawValue, resource: "feature store",
                purpose: CorePurpose.personalization.rawValue,
                outcome: .allowed,
                reason:
                    "deleted \(report.interactionsDeleted) interactions, \(report.deliveriesDeleted) delivery fingerprints; shredded \(report.lapsedConsentsShredded) lapsed subjects"
            ))
        return report
    }

    func sweep() async throws -> RetentionReport {
        let at = now()
        let days = policy.purposes[CorePurpose.personalization.rawValue]?.retentionDays ?? 180
        // Keys of lapsed subjects first, in the key store alone; then their rows and the old data.
        let lapsed = try await store.read { db in try ledger.lapsed(at: at, in: db).filter { $0.1 == CorePurpose.personalization.rawValue }.map(\.0) }
        try await forgetting.uncountAnonymous(lapsed)
        try await forgetting.shredKeys(lapsed.map(FeatureStore.keyOwner), of: lapsed)
        forgetting.forgetInModels(lapsed, unlearn: true)
        let report = try await store.write { db -> RetentionReport in
            let interactions = try features.deleteInteractions(olderThanDays: days, now: at, in: db)
            let deliveries = try deliveries.deleteOlder(than: Int64(at.timeIntervalSince1970) - Int64(days) * 86_400, in: db)
            for token in lapsed { try features.deleteRows(token, in: db) }
            try db.announce(lapsed.map { .forgotten(token: $0.rawValue, unlearn: true) })
            return RetentionReport(interactionsDeleted: interactions, deliveriesDeleted: deliveries, lapsedConsentsShredded: lapsed.count)
        }
        let remaining = try await store.read { try deliveries.hasLegacy(in: $0) }
        deliveryKeys.legacy = remaining
        for token in lapsed { cache.drop(token: token.rawValue) }
        await forgetting.scrubWAL(after: "retention")
        return report
    }
}
