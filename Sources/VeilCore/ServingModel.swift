import Foundation
import Policy
import FeatureStore
import Recommender
import Storage
import Synchronization

/// Serving choices an operator sets in the configuration file.
public struct ServingOptions: Sendable, Equatable {
    /// Interaction kinds whose items are never recommended again to the same subject (bought, rated…).
    public var excludeInteractedKinds: Set<InteractionKind> = Set(InteractionKind.itemKinds).subtracting([.dwell])
    /// Content similarity per product type (top-level category); others are inferred from the catalog.
    public var contentSimilarity: [String: ContentSimilarity] = [:]
    /// Buckets of the content model's feature hashing.
    public var contentHashWidth = 1 << 14
    /// A demographic segment is used for cold-start lists only when it holds at least this many subjects.
    public var minimumSegmentSize = 5
    /// Neighbours that vote on a missing age band (k-nearest-neighbour imputation over behaviour).
    public var imputationNeighbours = 5
    /// Strategy per segment name (`clearance`, `new-arrivals`, `premium`), applied by the ranker as a boost.
    public var segmentStrategies: [String: SegmentStrategy] = [:]
    /// How far a strategy lifts the items it favours, in standard deviations of the subject's scores.
    public var strategyBoost: Float = 1
    /// Fit behaviour segments even without strategies (campaigns that target segments need them).
    public var segmentsForCampaigns = false
    public init() {}
}

/// What the ranker favours for a segment.
public enum SegmentStrategy: String, Sendable, CaseIterable, Equatable {
    /// Items tagged `clearance` or `sale`.
    case clearance
    /// Items tagged `new`.
    case newArrivals = "new-arrivals"
    /// Items priced above the median of their product type.
    case premium

    func applies(tags: [String], price: Double?, median: Double?) -> Bool {
        switch self {
        case .clearance: return tags.contains("clearance") || tags.contains("sale")
        case .newArrivals: return tags.contains("new")
        case .premium: return price != nil && median != nil && price! > median!
        }
    }
}

/// A trained model ready to serve: the recommender's dense world plus the maps back to catalog ids.
public struct ServingModel: Sendable {
    public internal(set) var version: String
    public let items: [String]
    public let itemIndex: [String: Int32]
    public let titles: [String]
    public let categories: [String]
    public let available: [Bool]
    /// The ranker (the hybrid once enough data exists; popularity otherwise).
    public internal(set) var ranker: any ScoringModel
    /// Item neighbours, for "because you viewed X" explanations.
    public let neighbours: ItemKNNModel
    /// Metadata similarity: reaches items nobody has interacted with yet, and explains "similar to X".
    public let content: ContentModel
    /// Items without any training interaction: collaborative components know nothing of them.
    public let cold: [Bool]
    /// Popularity per generalized demographic segment (cold-start subjects).
    public let segments: SegmentPopularity
    /// Anonymous popularity (counts from every event, consented or not), as z-scores over the catalog.
    public let popularity: [Float]
    /// Time-decayed counts at training time ("trending this week"), as z-scores over the catalog.
    public let trending: [Float]
    /// The hybrid's learned weights, stored with the model.
    public let blendWeights: [String: Float]
    public let users: Int
    public let options: ServingOptions
    /// The z-score scaler of behavioural features, fitted on this model's training subjects.
    public let behaviourScaler: FeatureScaler
    public let behaviourFeatureNames: [String]
    /// Short-term intent: session-kNN over past sessions (30-minute gaps), and its blend weight against the
    /// long-term model, chosen on held-out sessions.
    public internal(set) var sessionModel: SessionKNN
    public let sessionWeight: Float
    /// Age bands inferred for training subjects who gave none, by token. Used for segment counts only;
    /// an export lists them as inferred, never as facts.
    public internal(set) var imputedAgeBands: [String: KNNImputer.Imputed]
    /// Behaviour segments (k-means, k by silhouette) for per-segment strategies; nil with too few subjects.
    public internal(set) var segmentModel: SegmentModel?
    /// Per item: whether each configured strategy favours it (strategy → mask).
    public let strategyItems: [SegmentStrategy: [Bool]]
    let catalogByID: [String: CatalogItem]
    let productTypes: [String]
    /// Whom it was trained on, as keyed digests (set by the service that trains it).
    public internal(set) var provenance: ModelProvenance? = nil
    /// The data it was trained from, to unlearn without a full retrain; dropped with the model.
    var training: Training? = nil

    /// Trains on a feature-store snapshot. Deterministic for a snapshot and a seed. With `fixing`, the choices made on
    /// held-out data (blend weights, session weight, segment count) are taken from there instead of searched for.
    public static func train(
        snapshot: TrainingSnapshot, catalog: [CatalogItem], options: ServingOptions = ServingOptions(), threads: Int = 2,
        now: Date = Date(), fixing chosen: Hyperparameters? = nil
    ) -> ServingModel {
        let split = trainingSplit(snapshot, catalog: catalog)
        let modelOptions = Self.modelOptions(options, threads: threads)
        let time = Int64(now.timeIntervalSince1970)
        let ranker: any ScoringModel
        let hybridData = split.users.count >= 10 && split.trainMatrix.nonZeroCount >= 100
        if let weights = chosen.map({ $0.blendWeights })
            ?? (hybridData ? HybridTrainer(options: modelOptions).chooseWeights(on: split.validationSplit()).weights : nil)
        {
            ranker = HybridTrainer(options: modelOptions).fit(split, weights: weights).precomputing(at: time)
        } else {
            ranker = PopularityModel(counts: snapshot.anonymousCounts)
        }
        // The hybrid's item-kNN is the same model as the explanations' neighbours: one fit, one co-occurrence matrix.
        let neighbours = Self.sharedNeighbours(ranker) ?? ItemKNN(similarity: .cosine, neighbours: 50, threads: threads).fit(split.trainMatrix)
        let sessions = SessionData.sessions(from: split.train, gap: sessionGap)
        let sessionModel = SessionKNN(sessions: sessions.map(\.items), owners: sessions.map(\.user), items: split.items.count)
        let sessionWeight = chosen?.sessionWeight ?? Self.chooseSessionWeight(split, sessions: sessions)
        return assemble(
            snapshot: snapshot, split: split, catalog: catalog, options: options, time: time, ranker: ranker, neighbours: neighbours,
            sessionModel: sessionModel, sessionWeight: sessionWeight, segmentCount: chosen?.segmentCount, threads: threads)
    }

    /// The choices training makes on held-out data rather than fits: kept with the model, so that unlearning changes
    /// only what was learned from the data.
    public struct Hyperparameters: Sendable, Equatable {
        /// The hybrid's blend weights (per ``HybridTrainer/componentNames``); nil when the ranker is popularity.
        public var blendWeights: [Float]?
        public var sessionWeight: Float
        /// Behaviour segments' k; nil when no segment model is fitted.
        public var segmentCount: Int?
    }

    /// What the model was trained from, kept in memory to unlearn subjects without a full retrain.
    struct Training: Sendable {
        public var snapshot: TrainingSnapshot
        var split: EvaluationSplit
        let catalog: [CatalogItem]
        let time: Int64
        let threads: Int
        /// Per user of `split`, its index in `snapshot`.
        let snapshotIndex: [Int]
        /// Users whose data was deleted: their token and profile are gone from here, their rows stay, attached to
        /// nobody, until ``ServingModel/unlearning(_:)`` subtracts them.
        var forgotten: Set<Int> = []

        /// Users of `split` with these tokens.
        func rows(of tokens: Set<String>) -> Set<Int> {
            Set(split.users.indices.filter { tokens.contains(split.users[$0]) })
        }
    }

    /// The reference time it was trained at (trending and recency are computed for it).
    public var trainedAt: Date? { training.map { Date(timeIntervalSince1970: TimeInterval($0.time)) } }

    public var hyperparameters: Hyperparameters {
        Hyperparameters(blendWeights: (ranker as? HybridModel)?.weights, sessionWeight: sessionWeight, segmentCount: segmentModel?.centroids.count)
    }

    static func modelOptions(_ options: ServingOptions, threads: Int) -> ModelCatalog.Options {
        var modelOptions = ModelCatalog.Options()
        modelOptions.threads = threads
        modelOptions.als.factors = 32
        modelOptions.contentHashWidth = options.contentHashWidth
        modelOptions.contentSimilarity = options.contentSimilarity
        return modelOptions
    }

    static func trainingSplit(_ snapshot: TrainingSnapshot, catalog: [CatalogItem]) -> EvaluationSplit {
        let catalogByID = Dictionary(catalog.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let rows = snapshot.interactions.map {
            RatingRow(user: snapshot.tokens[Int($0.user)].rawValue, item: snapshot.items[Int($0.item)], rating: $0.weight, timestamp: $0.time)
        }
        return EvaluationSplit(
            train: rows, test: [],
            catalog: snapshot.items.map { id in
                (
                    id: id,
                    content: catalogByID[id].map {
                        ItemContent(category: $0.category, brand: $0.brand, attributes: $0.attributes, tags: $0.tags, title: $0.title)
                    }
                )
            })
    }

    /// The model as if `tokens` had never been in its training data, without a full retrain: every learned part is
    /// unlearned exactly (item-kNN and EASE by downdates, counts and sessions by removal) or refitted on the data
    /// without them (ALS, whose half-step would leave the subjects' trace in the other users' factors; the derived
    /// tables: behaviour scaling, imputed age bands, segment counts and clusters). The hyperparameters stay as chosen.
    /// Equal, within float rounding, to ``train(snapshot:catalog:options:threads:now:fixing:)`` on the snapshot
    /// without them with ``hyperparameters`` fixed. Nil when the model keeps no training data or holds none of them.
    public func unlearning(_ tokens: Set<String>) -> ServingModel? {
        guard let training else { return nil }
        let removed = training.forgotten.union(training.rows(of: tokens))
        guard !removed.isEmpty else { return nil }
        let request = UnlearningRequest(removing: removed, from: training.split)
        let snapshot = Self.snapshot(training.snapshot, without: Set(removed.map { training.snapshotIndex[$0] }))
        let ranker: any ScoringModel
        if let hybrid = self.ranker as? HybridModel {
            let modelOptions = Self.modelOptions(options, threads: training.threads)
            guard
                let unlearned = hybrid.unlearning(
                    request, refitting: { try? ModelCatalog.fit($0.name, on: request.after, options: modelOptions) })
            else { return nil }
            ranker = unlearned.precomputing(at: training.time)
        } else {
            ranker = PopularityModel(counts: snapshot.anonymousCounts)
        }
        guard let neighbours = Self.sharedNeighbours(ranker) ?? neighbours.unlearning(request), let sessions = sessionModel.unlearning(request) else {
            return nil
        }
        return Self.assemble(
            snapshot: snapshot, split: request.after, catalog: training.catalog, options: options, time: training.time,
            ranker: ranker, neighbours: neighbours, sessionModel: sessions, sessionWeight: sessionWeight,
            segmentCount: segmentModel?.centroids.count, threads: training.threads)
    }

    /// The hybrid's cosine item-kNN with 50 neighbours, when it has one: the model explanations use too.
    static func sharedNeighbours(_ ranker: any ScoringModel) -> ItemKNNModel? {
        (ranker as? HybridModel)?.components.lazy.compactMap { $0 as? ItemKNNModel }.first { $0.name == "item-knn" && $0.neighbours == 50 }
    }

    /// What the feature store would give without the subjects at indices `gone`: their rows gone, and their events
    /// out of the anonymous counts (as a withdrawal takes them out of the stored counts).
    public static func snapshot(_ snapshot: TrainingSnapshot, without gone: Set<Int>) -> TrainingSnapshot {
        var out = snapshot
        var newIndex = [Int32](repeating: -1, count: snapshot.tokens.count)
        var next: Int32 = 0
        for t in snapshot.tokens.indices where !gone.contains(t) {
            newIndex[t] = next
            next += 1
        }
        for x in snapshot.interactions where gone.contains(Int(x.user)) {
            out.anonymousCounts[Int(x.item)] = max(out.anonymousCounts[Int(x.item)] - 1, 0)
        }
        out.interactions = snapshot.interactions.compactMap { x in newIndex[Int(x.user)] < 0 ? nil : (newIndex[Int(x.user)], x.item, x.weight, x.time)
        }
        let kept = snapshot.tokens.indices.filter { !gone.contains($0) }
        out.tokens = kept.map { snapshot.tokens[$0] }
        out.profiles = kept.map { snapshot.profiles[$0] }
        out.purchases = kept.map { snapshot.purchases[$0] }
        return out
    }

    /// Trains again from scratch on the data this model was trained on without `tokens`, with its hyperparameters
    /// fixed or (`searching`) searched for again: what ``unlearning(_:)`` is measured against (`veil bench unlearn`).
    public func retrained(without tokens: Set<String>, searching: Bool = false) -> ServingModel? {
        guard let training else { return nil }
        let gone = training.forgotten.union(training.rows(of: tokens)).map { training.snapshotIndex[$0] }
        return Self.train(
            snapshot: Self.snapshot(training.snapshot, without: Set(gone)), catalog: training.catalog, options: options,
            threads: training.threads, now: Date(timeIntervalSince1970: TimeInterval(training.time)),
            fixing: searching ? nil : hyperparameters)
    }

    /// The training data as the recommender saw it (tokens as user ids), for benchmarks; nil for a model without it.
    public var trainingSplit: EvaluationSplit? { training?.split }

    /// Everything derived from the learned parts and the data: cheap enough to compute again when unlearning.
    private static func assemble(
        snapshot: TrainingSnapshot, split: EvaluationSplit, catalog: [CatalogItem], options: ServingOptions, time: Int64,
        ranker: any ScoringModel, neighbours: ItemKNNModel, sessionModel: SessionKNN, sessionWeight: Float,
        segmentCount: Int?, threads: Int = 2
    ) -> ServingModel {
        let catalogByID = Dictionary(catalog.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let content = ContentModel(items: split.itemContent, width: options.contentHashWidth, similarity: options.contentSimilarity)
        var weights: [String: Float] = ["popularity": 1]
        if let hybrid = ranker as? HybridModel { weights = Dictionary(uniqueKeysWithValues: zip(HybridTrainer.componentNames, hybrid.weights)) }
        var trending = [Float](repeating: 0, count: split.items.count)
        trending.withUnsafeMutableBufferPointer {
            TrendingModel(itemCount: split.items.count, interactions: split.train, halfLife: ModelCatalog.Options().trendingHalfLife)
                .score(UserContext(user: nil, items: [], time: time), into: $0)
        }
        // Behaviour → scaled features → the age band of subjects who gave none, from their nearest neighbours.
        let typeNames = Array(Set(split.itemContent.map(\.productType).filter { !$0.isEmpty })).sorted()
        let typeIndex = Dictionary(uniqueKeysWithValues: typeNames.enumerated().map { ($1, $0) })
        let behaviour = BehaviourFeatures(
            matrix: split.trainMatrix, itemTypes: split.itemContent.map { typeIndex[$0.productType] ?? -1 },
            typeNames: typeNames, itemPrices: split.items.map { catalogByID[$0]?.price }, times: split.trainTimes, now: time)
        let scaler = FeatureScaler(kind: .zScore, fittedOn: behaviour.rows)
        let userIndex = Dictionary(uniqueKeysWithValues: split.users.enumerated().map { ($1, $0) })
        let tokenIndex = Dictionary(snapshot.tokens.enumerated().map { ($1.rawValue, $0) }, uniquingKeysWith: { a, _ in a })
        var profiles = [[String: String]](repeating: [:], count: split.users.count)
        for (t, token) in snapshot.tokens.enumerated() {
            if let u = userIndex[token.rawValue], t < snapshot.profiles.count { profiles[u] = snapshot.profiles[t] }
        }
        let imputations = KNNImputer(k: options.imputationNeighbours).impute(
            features: behaviour.rows.map(scaler.transform),
            labels: profiles.map { $0["age_band"] })
        var imputed: [String: KNNImputer.Imputed] = [:]
        for (u, guess) in imputations.enumerated() {
            guard let guess else { continue }
            imputed[split.users[u]] = guess
            profiles[u]["age_band"] = guess.value
        }
        // Standardised once here rather than on every non-personalized request.
        var popularity = (0..<split.items.count).map { $0 < snapshot.anonymousCounts.count ? snapshot.anonymousCounts[$0] : 0 }
        popularity.withUnsafeMutableBufferPointer { HybridModel.standardise($0) }
        trending.withUnsafeMutableBufferPointer { HybridModel.standardise($0) }
        let segmentKeys = profiles.map(Self.segmentKeys)
        let now = Date(timeIntervalSince1970: TimeInterval(time))
        let segmentModel =
            options.segmentStrategies.isEmpty && !options.segmentsForCampaigns
            ? nil
            : SegmentModel.fit(snapshot: snapshot, catalog: catalog, k: segmentCount, now: now)
        var medians: [String: Double] = [:]
        for (type, items) in Dictionary(grouping: catalog.filter { $0.price != nil }, by: { String($0.category.split(separator: "/").first ?? "") }) {
            let prices = items.compactMap(\.price).sorted()
            medians[type] = prices[prices.count / 2]
        }
        var strategyItems: [SegmentStrategy: [Bool]] = [:]
        for strategy in Set(options.segmentStrategies.values) {
            strategyItems[strategy] = split.items.map { id in
                guard let item = catalogByID[id] else { return false }
                return strategy.applies(tags: item.tags, price: item.price, median: medians[String(item.category.split(separator: "/").first ?? "")])
            }
        }
        // A random part, not a count: an unlearned model's version must not tell how many events its subject had.
        let version = "m-" + String(time, radix: 36) + "-" + String(UInt32.random(in: .min ... .max), radix: 36)
        return ServingModel(
            version: version, items: split.items,
            itemIndex: Dictionary(uniqueKeysWithValues: split.items.enumerated().map { ($1, Int32($0)) }),
            titles: split.items.map { catalogByID[$0]?.title ?? $0 },
            categories: split.items.map { catalogByID[$0]?.category ?? "" },
            available: split.items.map { catalogByID[$0]?.available ?? false },
            ranker: ranker, neighbours: neighbours, content: content,
            cold: split.trainMatrix.columnCounts().map { $0 == 0 },
            segments: SegmentPopularity(matrix: split.trainMatrix, userSegments: segmentKeys, minimumUsers: options.minimumSegmentSize),
            popularity: popularity, trending: trending,
            blendWeights: weights, users: split.users.count, options: options,
            behaviourScaler: scaler, behaviourFeatureNames: behaviour.names,
            sessionModel: sessionModel, sessionWeight: sessionWeight, imputedAgeBands: imputed,
            segmentModel: segmentModel, strategyItems: strategyItems, catalogByID: catalogByID,
            productTypes: Array(Set(catalog.map { String($0.category.split(separator: "/").first ?? "") })).sorted(),
            training: Training(
                snapshot: snapshot, split: split, catalog: catalog, time: time, threads: threads,
                snapshotIndex: split.users.map { tokenIndex[$0]! }))
    }

    /// The model without what it holds about these subjects alone, for a withdrawal or an erasure before it returns:
    /// their imputed age band and segment assignment, and, when their data was deleted (`detach`), their ALS factors
    /// and sessions, and their token and profile in the retained training data (their rows stay, attached to nobody,
    /// until unlearning subtracts them). Nil when the model holds nothing of them.
    func forgetting(_ tokens: Set<String>, detach: Bool) -> ServingModel? {
        var model = self
        var changed = false
        for token in tokens where model.imputedAgeBands[token] != nil {
            model.imputedAgeBands[token] = nil
            changed = true
        }
        for token in tokens where model.segmentModel?.assignments[token] != nil {
            model.segmentModel?.assignments[token] = nil
            changed = true
        }
        guard detach, var training = model.training else { return changed ? model : nil }
        let rows = training.rows(of: tokens)
        guard !rows.isEmpty else { return changed ? model : nil }
        for u in rows {
            let t = training.snapshotIndex[u]
            let placeholder = SubjectToken(digest: (0..<16).map { _ in UInt8.random(in: 0...255) })
            training.split.users[u] = placeholder.rawValue
            training.snapshot.tokens[t] = placeholder
            training.snapshot.profiles[t] = [:]
            training.snapshot.purchases[t] = 0
        }
        training.forgotten.formUnion(rows)
        model.training = training
        if let hybrid = model.ranker as? HybridModel {
            model.ranker = HybridModel(components: hybrid.components.map { ($0 as? ALSModel)?.zeroingUsers(rows) ?? $0 }, weights: hybrid.weights)
        }
        model.sessionModel = model.sessionModel.removingSessions(of: rows) ?? model.sessionModel
        return model
    }

    /// The weight of session scores against long-term scores that maximises next-item
    /// HitRate@10 on the newest fifth of sessions, with both models fitted on the older sessions only (item-kNN
    /// over each user's history stands in for the long-term model, which would have seen the held-out items).
    static let sessionGap: Int64 = 1800
    static func chooseSessionWeight(_ split: EvaluationSplit, sessions: [(user: Int32, start: Int64, items: [Int32])]) -> Float {
        guard sessions.count >= 20 else { return 0.5 }
        let cut = sessions[sessions.count * 4 / 5].start
        let older = split.train.filter { $0.time < cut }
        let knn = ItemKNN(similarity: .cosine, neighbours: 50).fit(
            SparseMatrix(users: split.users.count, items: split.items.count, interactions: older))
        let sknn = SessionKNN(sessions: sessions.filter { $0.start < cut }.map(\.items), items: split.items.count)
        var history = [[Int32]](repeating: [], count: split.users.count)
        for x in older { history[Int(x.user)].append(x.item) }
        // Held-out cases: (user, session prefix, next item), at most 400.
        let cases = sessions.filter { $0.start >= cut }.prefix(400).map {
            (user: Int($0.user), prefix: Array($0.items.dropLast()), target: $0.items.last!)
        }
        guard !cases.isEmpty else { return 0.5 }
        let n = split.items.count
        var best: (weight: Float, hits: Int) = (0, -1)
        for w in [Float(0), 0.25, 0.5, 0.75, 1] {
            var hits = 0
            var long = [Float](repeating: 0, count: n), short = [Float](repeating: 0, count: n)
            for c in cases {
                long.withUnsafeMutableBufferPointer { b in
                    knn.score(UserContext(user: nil, items: history[c.user] + c.prefix), into: b)
                    HybridModel.standardise(b)
                }
                short.withUnsafeMutableBufferPointer { b in
                    sknn.score(session: c.prefix, into: b)
                    HybridModel.standardise(b)
                }
                let blended = (0..<n).map { (1 - w) * long[$0] + w * short[$0] }
                let seen = Set(c.prefix)
                let top = blended.withUnsafeBufferPointer { TopK.select(scores: $0, k: 10) { seen.contains(Int32($0)) } }
                if top.items.contains(c.target) { hits += 1 }
            }
            // Ties go to the weight nearest an even blend.
            if hits > best.hits || hits == best.hits && abs(w - 0.5) < abs(best.weight - 0.5) { best = (w, hits) }
        }
        return best.weight
    }

    /// Segment keys of a generalized profile, finest first: age band × region × device class, age band × region,
    /// region, age band. Each names its level so that an explanation can say which one answered.
    static func segmentKeys(_ profile: [String: String]) -> [String] {
        let age = profile["age_band"]
        let region = profile["location"]
        let device = profile["device"]
        var keys: [String] = []
        if let age, let region, let device { keys.append("age=\(age)|region=\(region)|device=\(device)") }
        if let age, let region { keys.append("age=\(age)|region=\(region)") }
        if let region { keys.append("region=\(region)") }
        if let age { keys.append("age=\(age)") }
        return keys
    }
}

/// The current model, swapped atomically after a retrain.
public final class ModelRegistry: Sendable {
    private struct State {
        var stable: ServingModel?
        var canary: ServingModel?
        /// Counts every change, so that ``forget(_:detach:)`` installs only over what it computed from.
        var generation: UInt64 = 0
        /// Subjects whose data was deleted and who may still be in a model being trained or unlearned: every model
        /// installed forgets them too, until ``settled(_:)`` says no model can hold them.
        var forgotten: Set<String> = []
    }

    /// Installs `model` with the deleted subjects forgotten: computed outside the lock (it copies the model's
    /// training data), installed only if nobody was forgotten meanwhile (else computed again).
    private func install(_ model: ServingModel, _ put: (inout State, ServingModel) -> Void) {
        while true {
            let forgotten = current.withLock { $0.forgotten }
            let prepared = forgotten.isEmpty ? model : model.forgetting(forgotten, detach: true) ?? model
            let done = current.withLock { state -> Bool in
                guard state.forgotten == forgotten else { return false }
                put(&state, prepared)
                state.generation += 1
                return true
            }
            if done { return }
        }
    }
    private let current = Mutex(State())
    public init() {}
    public var model: ServingModel? { current.withLock { $0.stable } }
    /// The stable and canary models' versions, without copying a model (a copy retains every one of its
    /// arrays and tables: measurable on a cache hit, which needs only the version).
    public var versions: (stable: String?, canary: String?) { current.withLock { ($0.stable?.version, $0.canary?.version) } }
    /// A newly trained model serving a share of subjects until it is promoted or rolled back.
    public var canary: ServingModel? { current.withLock { $0.canary } }
    /// Makes `model` the one every subject gets (and ends any canary).
    public func swap(_ model: ServingModel) {
        install(model) { state, prepared in
            state.stable = prepared
            state.canary = nil
        }
    }
    public func setCanary(_ model: ServingModel) {
        install(model) { state, prepared in state.canary = prepared }
    }

    /// Drops what the served models (stable and canary) hold about these subjects alone, before a withdrawal or an
    /// erasure returns (``ServingModel/forgetting(_:detach:)``). Computed outside the lock, installed only if no other
    /// change came in between (else computed again on what did).
    public func forget(_ tokens: Set<String>, detach: Bool = true) {
        if detach { current.withLock { $0.forgotten.formUnion(tokens) } }
        while true {
            let (seen, stable, canary) = current.withLock { ($0.generation, $0.stable, $0.canary) }
            let newStable = stable?.forgetting(tokens, detach: detach), newCanary = canary?.forgetting(tokens, detach: detach)
            if newStable == nil && newCanary == nil { return }
            let done = current.withLock { state -> Bool in
                guard state.generation == seen else { return false }
                state.stable = newStable ?? state.stable
                state.canary = newCanary ?? state.canary
                state.generation += 1
                return true
            }
            if done { return }
        }
    }
    /// Makes the canary the stable model if it is still the one of `version`: the registry's own copy, with whatever
    /// was forgotten since it was read. False when another model replaced it meanwhile.
    func promoteCanary(version: String) -> Bool {
        current.withLock { state in
            guard let canary = state.canary, canary.version == version else { return false }
            state.stable = canary
            state.canary = nil
            state.generation += 1
            return true
        }
    }

    /// These subjects are in no served model any more, nor in any model still being built: installs stop forgetting them.
    func settled(_ tokens: some Sequence<String>) {
        current.withLock { state in for token in tokens { state.forgotten.remove(token) } }
    }

    public func dropCanary() {
        current.withLock {
            $0.canary = nil
            $0.generation += 1
        }
    }
}

/// Recommendation responses cached per token with a TTL; dropped on a new event, a consent change, an
/// erasure and a model swap. Entries are kept rendered, so a hit only splices in its request id and subject.
///
/// Three promises, each with a test (`CacheTests`):
/// - **Never past consent.** An entry expires at the TTL or when the consent it was made under lapses, whichever
///   comes first.
/// - **No stale write after a drop.** A miss reads a ``Generation`` before its database snapshot and stores its list
///   only if no drop (a withdrawal, an event, an erasure) or clear happened for that token since: otherwise a miss
///   that read before a withdrawal committed could store a personalized list after the withdrawal dropped the old one.
/// - **Bounded.** At most `maxEntries` entries and `maxBytes` rendered bytes; the oldest go first.
///
/// It also remembers which canonical token a source token resolved to (identity links) for the same TTL, so a
/// hit needs no database read. A link made by this process clears that memory at once; one made by another
/// process (the command line) is seen when the entry expires, as are that process's events and consents.
public final class RecommendationCache: Sendable {
    /// What a list depends on besides the subject: model version, experiment arms and the query.
    struct Key: Hashable {
        var modelVersion: String
        var arms: [String]
        var k: Int
        var categories: [String]
        var exclude: [String]
        var session: [String]

        var approximateBytes: Int {
            modelVersion.utf8.count + (arms + categories + exclude + session).reduce(0) { $0 + $1.utf8.count + 16 } + 64
        }
    }
    struct Slot: Hashable {
        public var token: String
        var key: Key
    }
    struct Entry {
        let expires: Date
        let value: RenderedRecommendation
        let bytes: Int
        let order: UInt64
    }
    /// The token's stripe counter and the cache-wide epoch, read before a miss's snapshot.
    struct Generation: Equatable {
        fileprivate let stripe: Int
        fileprivate let value: UInt64
        fileprivate let epoch: UInt64
    }
    struct State {
        var entries: [Slot: Entry] = [:]
        var keysOfToken: [String: Set<Key>] = [:]
        /// Insertion order, oldest first from `head`; records whose entry was replaced or dropped are skipped.
        var order: [(order: UInt64, slot: Slot)] = []
        var head = 0
        var next: UInt64 = 0
        var bytes = 0
        /// Per-token generations, striped: a bump may also refuse a put of another token of the stripe (it is then
        /// just not cached), and memory stays fixed however many tokens pass.
        var stripes = [UInt64](repeating: 0, count: RecommendationCache.stripeCount)
        var epoch: UInt64 = 0
    }
    static let stripeCount = 4096
    private let state = Mutex(State())
    private let links = Mutex<[String: (canonical: SubjectToken, expires: Date)]>([:])
    public let ttl: TimeInterval
    public let maxEntries: Int
    public let maxBytes: Int
    /// Bound on remembered links.
    static let linkCapacity = 100_000

    public init(ttl: TimeInterval = 30, maxEntries: Int = 50_000, maxBytes: Int = 64 << 20) {
        self.ttl = ttl
        self.maxEntries = max(1, maxEntries)
        self.maxBytes = max(1, maxBytes)
    }

    private static func stripe(_ token: String) -> Int {
        var hasher = Hasher()
        hasher.combine(token)
        return Int(UInt(bitPattern: hasher.finalize()) % UInt(stripeCount))
    }

    /// Read before the snapshot a list is computed from; ``put(token:key:value:now:validUntil:generation:)`` stores
    /// only while it is still current.
    func generation(token: String) -> Generation {
        let stripe = Self.stripe(token)
        return state.withLock { Generation(stripe: stripe, value: $0.stripes[stripe], epoch: $0.epoch) }
    }

    func get(token: String, key: Key, now: Date) -> RenderedRecommendation? {
        state.withLock { $0.entries[Slot(token: token, key: key)].flatMap { $0.expires > now ? $0.value : nil } }
    }

    /// Stores a list until the TTL or `validUntil` (the consent's expiry), whichever is first, unless the token was
    /// dropped (or the cache cleared) since `generation` was read.
    func put(token: String, key: Key, value: RenderedRecommendation, now: Date, validUntil: Date? = nil, generation: Generation) {
        guard ttl > 0 else { return }
        var expires = now.addingTimeInterval(ttl)
        if let validUntil { expires = min(expires, validUntil) }
        guard expires > now else { return }
        let slot = Slot(token: token, key: key)
        let bytes = value.head.count + value.auditReason.utf8.count + token.utf8.count + key.approximateBytes
        guard bytes <= maxBytes else { return }
        state.withLock { s in
            guard s.stripes[generation.stripe] == generation.value, s.epoch == generation.epoch else { return }
            if let old = s.entries[slot] { s.bytes -= old.bytes }
            let order = s.next
            s.next += 1
            s.entries[slot] = Entry(expires: expires, value: value, bytes: bytes, order: order)
            s.keysOfToken[token, default: []].insert(key)
            s.order.append((order, slot))
            s.bytes += bytes
            evict(&s, now: now)
        }
    }

    private func evict(_ s: inout State, now: Date) {
        while s.entries.count > maxEntries || s.bytes > maxBytes, s.head < s.order.count {
            let (order, slot) = s.order[s.head]
            s.head += 1
            if let entry = s.entries[slot], entry.order == order { remove(slot, &s) }
        }
        // Records of replaced or dropped entries pile up in `order`: compact once they are the majority.
        if s.head > 1024, s.head * 2 > s.order.count {
            s.order.removeFirst(s.head)
            s.head = 0
        }
        if s.order.count > 4 * max(s.entries.count, 1024) {
            s.order = s.order[s.head...].filter { s.entries[$0.slot]?.order == $0.order }
            s.head = 0
        }
    }

    private func remove(_ slot: Slot, _ s: inout State) {
        guard let entry = s.entries.removeValue(forKey: slot) else { return }
        s.bytes -= entry.bytes
        s.keysOfToken[slot.token]?.remove(slot.key)
        if s.keysOfToken[slot.token]?.isEmpty == true { s.keysOfToken[slot.token] = nil }
    }

    /// The canonical token `source` resolved to within the TTL, if remembered.
    func canonical(of source: SubjectToken, now: Date) -> SubjectToken? {
        links.withLock { $0[source.rawValue].flatMap { $0.expires > now ? $0.canonical : nil } }
    }

    func remember(source: SubjectToken, canonical: SubjectToken, now: Date) {
        guard ttl > 0 else { return }
        links.withLock { all in
            if all.count > Self.linkCapacity { all.removeAll() }
            all[source.rawValue] = (canonical, now.addingTimeInterval(ttl))
        }
    }

    /// Forgets every remembered link (after a link, an unlink or an erasure).
    func forgetLinks() { links.withLock { $0.removeAll() } }

    /// Drops the token's lists and refuses any put that read its generation before this.
    public func drop(token: String) {
        let stripe = Self.stripe(token)
        state.withLock { s in
            s.stripes[stripe] &+= 1
            for key in s.keysOfToken[token] ?? [] { remove(Slot(token: token, key: key), &s) }
        }
    }

    public func clear() {
        state.withLock { s in
            let epoch = s.epoch &+ 1
            s = State()
            s.epoch = epoch
        }
        forgetLinks()
    }

    public func contains(token: String) -> Bool { state.withLock { $0.keysOfToken[token] != nil } }

    /// Entries and rendered bytes held now.
    public var usage: (entries: Int, bytes: Int) { state.withLock { ($0.entries.count, $0.bytes) } }
}
