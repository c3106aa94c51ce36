import FeatureStore
import Foundation
import Serving
import Logging
import Persistence
import Storage
import Vault

/// The steps every withdrawal, erasure and lapse of consent shares once a person's data is to go: taking their events
/// out of the anonymous counts, making the models forget them, and scrubbing the write-ahead log after the shred.
final class Forgetting: Sendable {
    let store: any OperationalStore
    let keys: SubjectKeys
    let features: FeatureStore
    let models: ModelRegistry
    let unlearning: UnlearningQueue
    let promotions: PromotionBandits
    let logger: Logger
    let now: @Sendable () -> Date

    init(
        store: any OperationalStore, keys: SubjectKeys, features: FeatureStore, models: ModelRegistry, unlearning: UnlearningQueue,
        promotions: PromotionBandits,
        logger: Logger, now: @escaping @Sendable () -> Date
    ) {
        self.store = store
        self.keys = keys
        self.features = features
        self.models = models
        self.unlearning = unlearning
        self.promotions = promotions
        self.logger = logger
        self.now = now
    }

    /// What the served models and the bandits hold about these subjects alone goes before a withdrawal or an
    /// erasure returns (imputed values, exposures awaiting a reward). Experiment assignments are a hash of the
    /// token, held nowhere.
    /// With `unlearn`, their training data was deleted: a model trained without them follows within the unlearning
    /// delay.
    func forgetInModels(_ tokens: [SubjectToken], unlearn: Bool) {
        guard !tokens.isEmpty else { return }
        // Forgotten (every model installed from now on forgets them too) before queued, so that an unlearning
        // settling the queue meanwhile cannot leave them remembered as forgotten for good.
        models.forget(Set(tokens.map(\.rawValue)), detach: unlearn)
        if unlearn { unlearning.enqueue(tokens.map(\.rawValue), at: now()) }
        for token in tokens { promotions.forget(token: token.rawValue) }
    }

    /// Shreds the data keys of `owners` (of `tokens`) in a transaction of the key store alone, committed before the
    /// caller deletes the rows (see ``SubjectKeys/shredKeys(_:in:)``), and tells the other gateways on a shared database
    /// in the same transaction: from its commit no gateway opens or seals with those keys, whatever fails next.
    func shredKeys(_ owners: [DataKeyOwner], of tokens: [SubjectToken]) async throws {
        guard !owners.isEmpty else { return }
        let keys = self.keys
        try await store.write { tx in
            for owner in owners { try keys.shred(owner, in: tx) }
            try tx.announce(tokens.map { .forgotten(token: $0.rawValue, unlearn: true) })
        }
    }

    /// Takes the subjects' stored events back out of the anonymous counts while their keys still open them (read,
    /// then marked and subtracted in one write), durably before their keys are shredded: after the shred a retry
    /// could no longer read which items to subtract.
    func uncountAnonymous(_ tokens: [SubjectToken]) async throws {
        guard !tokens.isEmpty else { return }
        let features = self.features
        let events = try await store.read { try features.countedEvents(of: tokens, in: $0) }
        guard !events.isEmpty else { return }
        _ = try await store.write { try features.uncount(events, in: $0) }
        try await store.syncCommitted()
    }

    /// Empties the WAL after shredding so no old page image stays in it; when a reader keeps it busy, says so in
    /// the log (the store retries until it succeeds) and returns false.
    @discardableResult
    func scrubWAL(after what: String) async -> Bool {
        guard case .deferred(let reason) = await store.scrubAfterErasure() else { return true }
        logger.warning(
            "a reader keeps old pages in the WAL after \(what); emptying it is retried every second until done", metadata: ["error": "\(reason)"])
        return false
    }
}
