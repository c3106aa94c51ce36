import Consent
import FeatureStore
import Foundation
import NIOCore
import Persistence
import Policy
import Prometheus
import Recommender
import Serving
import Storage

/// Recommendations for a subject: consent checked, the served model (or its canary) ranked with the subject's history,
/// session, profile, experiments and promotions, and the rendered list cached.
public final class Recommendations: Sendable {
    let subjects: Subjects
    let cache: RecommendationCache
    let models: ModelRegistry
    let experiments: ExperimentTracker
    let promotions: PromotionBandits
    let store: any OperationalStore
    let ledger: ConsentLedger
    let features: FeatureStore
    let metrics: VeilMetrics
    let hooks: TestHooks
    let now: @Sendable () -> Date

    init(
        subjects: Subjects, cache: RecommendationCache, models: ModelRegistry, experiments: ExperimentTracker, promotions: PromotionBandits,
        store: any OperationalStore, ledger: ConsentLedger, features: FeatureStore, metrics: VeilMetrics, hooks: TestHooks,
        now: @escaping @Sendable () -> Date
    ) {
        self.subjects = subjects
        self.cache = cache
        self.models = models
        self.experiments = experiments
        self.promotions = promotions
        self.store = store
        self.ledger = ledger
        self.features = features
        self.metrics = metrics
        self.hooks = hooks
        self.now = now
    }

    public typealias RecommendationQuery = Serving.RecommendationQuery

    /// The response body of `GET /v1/recommendations/{subject}`.
    public func recommend(
        subject: String, query: RecommendationQuery, principal: Principal, requestID: String, note: AuditNote
    ) async throws -> ByteBuffer {
        let at = now()
        let token = try await canonicalToken(of: try subjects.sourceToken(for: subject, principal: principal), at: at)
        note.update {
            $0.subjectToken = token.rawValue; $0.purpose = CorePurpose.personalization.rawValue
        }
        let versions = models.versions
        guard let stableVersion = versions.stable else {
            throw CoreError(
                .unavailable, "no_model", "no model is trained yet; send events and run `veil train` or wait for the scheduled retrain")
        }
        let (assignments, arms, variant, useCanary) = experimentArms(token, canaryServed: versions.canary != nil, at: at)
        func cacheKey(_ version: String) -> RecommendationCache.Key {
            .init(
                modelVersion: version, arms: arms, k: query.k, categories: query.categories, exclude: query.exclude.sorted(), session: query.session)
        }
        if let cached = cache.get(token: token.rawValue, key: cacheKey(useCanary ? versions.canary! : stableVersion), now: at) {
            metrics.cacheHits.increment()
            note.update { $0.reason = cached.auditReason + " (cached)" }
            // Experiments count only subjects whose consent the list was made under.
            if cached.consented { experiments.exposure(assignments) }
            return cached.body(requestID: requestID, subject: subject)
        }
        metrics.cacheMisses.increment()
        // Read before the snapshot below: if the subject's lists are dropped meanwhile (a withdrawal committing
        // between this read and the put), the list computed here is not cached.
        let generation = cache.generation(token: token.rawValue)
        // A miss: the model itself (a swap since the versions were read just means this list is keyed by the newer one).
        guard let stable = models.model else { throw CoreError.internal }
        let model = useCanary ? models.canary ?? stable : stable
        let campaigns = promotions.campaigns.filter { $0.window(at: at) != nil }
        let (decision, history, profile, marketing) = try await subjectData(
            token, campaigns: !campaigns.isEmpty, sessionGiven: !query.session.isEmpty, at: at)
        // The subject's behaviour segment, for segment strategies and campaign targeting (computed once).
        let segment =
            history.isEmpty
            ? nil
            : model.segmentModel?.segment(of: history, catalog: model.catalogByID, types: model.productTypes, now: Int64(at.timeIntervalSince1970))
        let offers =
            marketing ? promotionOffers(campaigns, model: model, token: token, history: history, segment: segment, profile: profile, at: at) : []
        let auditReason = decision.allowed ? "personalized" : "non-personalized: \(decision.reason.rawValue)"
        note.update { $0.reason = auditReason }
        var ranker = Ranker(model: model)
        ranker.rankerOverride = variant?.ranker
        ranker.strategyBoostOverride = variant?.strategyBoost
        ranker.promotions = offers
        ranker.segment = segment
        let ranked = ranker.rank(
            history: history, session: decision.allowed ? query.session : [], profile: history.isEmpty ? profile : nil,
            query: query, now: at)
        let rendered = RenderedRecommendation(
            RecommendationResponse(
                subject: subject, personalized: ranked.personalized, model_version: model.version,
                request_id: requestID, items: ranked.items),
            auditReason: auditReason, consented: decision.allowed)
        if decision.allowed { experiments.exposure(assignments) }
        hooks.beforeCachePut()
        cache.put(
            token: token.rawValue, key: cacheKey(model.version), value: rendered, now: at,
            validUntil: decision.expiresAt.map { Date(timeIntervalSince1970: Double($0) / 1000) }, generation: generation)
        return rendered.body(requestID: requestID, subject: subject)
    }

    /// The person's canonical token of a source token, remembered for a while (identity links change rarely).
    func canonicalToken(of source: SubjectToken, at: Date) async throws -> SubjectToken {
        if let remembered = cache.canonical(of: source, now: at) { return remembered }
        let token = try await subjects.canonical(source)
        cache.remember(source: source, canonical: token, now: at)
        return token
    }

    /// The subject's experiments: every assignment (for exposures), the arms that key the cache, the A/B variant
    /// whose settings apply, and whether the canary model serves this subject.
    func experimentArms(
        _ token: SubjectToken, canaryServed: Bool, at: Date
    ) -> (
        assignments: [(experiment: ExperimentSpec, variant: ExperimentSpec.Variant)], arms: [String], variant: ExperimentSpec.Variant?, canary: Bool
    ) {
        var variant: ExperimentSpec.Variant?
        var arms: [String] = []
        var useCanary = false
        let assignments = experiments.assignments(token: token.rawValue, at: at)
        for (experiment, v) in assignments {
            arms.append("\(experiment.name)=\(v.name)")
            if experiment.name.hasPrefix("canary:") {
                useCanary = v.name == "canary" && canaryServed
            } else if variant == nil {
                variant = v
            }
        }
        return (assignments, arms, variant, useCanary)
    }

    /// What a list may be made from, in one read: the personalization decision, and under it the history, the
    /// marketing decision (only when campaigns run) and the profile (for a cold start or targeting).
    func subjectData(
        _ token: SubjectToken, campaigns: Bool, sessionGiven: Bool, at: Date
    ) async throws -> (ConsentDecision, [StoredInteraction], [String: String]?, Bool) {
        let ledger = self.ledger, features = self.features
        return try await store.read { db -> (ConsentDecision, [StoredInteraction], [String: String]?, Bool) in
            let decision = try ledger.decision(token: token, purpose: CorePurpose.personalization.rawValue, at: at, in: db)
            guard decision.allowed else { return (decision, [], nil, false) }
            let history = try features.interactions(of: token, in: db)
            // Promotions are targeted with the subject's data only under marketing consent.
            let marketing = campaigns ? try ledger.decision(token: token, purpose: CorePurpose.marketing.rawValue, at: at, in: db).allowed : false
            // The profile matters for a subject without history (demographic cold start) and for targeting.
            let needProfile = marketing || history.isEmpty && !sessionGiven
            return (decision, history, needProfile ? try features.profile(of: token, in: db) : nil, marketing)
        }
    }

    /// The running campaigns that target this subject, each with the boost its bandit chose for the context.
    func promotionOffers(
        _ campaigns: [Campaign], model: ServingModel, token: SubjectToken, history: [StoredInteraction], segment: SegmentModel.Segment?,
        profile: [String: String]?, at: Date
    ) -> [Ranker.Promotion] {
        guard !history.isEmpty else { return [] }
        var offers: [Ranker.Promotion] = []
        for campaign in campaigns {
            guard let window = campaign.window(at: at), campaign.segments.isEmpty || segment.map({ campaign.segments.contains($0.name) }) == true
            else { continue }
            let mask = model.items.map { id in
                campaign.items.contains(id) || !(model.catalogByID[id]?.tags ?? []).allSatisfy { !campaign.tags.contains($0) }
            }
            let promoted = Set(zip(model.items, mask).filter(\.1).map(\.0))
            guard !promoted.isEmpty else { continue }
            let context = PromotionContext(at: at, window: window, device: profile?["device"], segment: segment?.id)
            let boost = promotions.choose(campaign: campaign, context: context, token: token.rawValue, items: promoted, at: at)
            offers.append(Ranker.Promotion(campaign: campaign.name, items: mask, boost: boost))
        }
        return offers
    }
}
