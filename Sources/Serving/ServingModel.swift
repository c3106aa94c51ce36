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
    /// How many of the most interacted-with items EASE models (its fit grows with the cube of this, its memory with the
    /// square: 12 bytes per pair).
    public var easeMaxItems = EASE.defaultMaxItems
    /// A demographic segment is used for cold-start lists only when it holds at least this many subjects.
    public var minimumSegmentSize = 5
    /// Neighbours that vote on a missing age band (k-nearest-neighbour imputation over behaviour).
    public var imputationNeighbours = 5
    /// Subjects with an age band that vote in the imputation, at most: each subject without one is compared with every
    /// one of them. Chosen by token order, which keyed tokens make a random sample that depends on no other subject.
    public var imputationReferences = 2048
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
    public var version: String
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
    /// The token of each training user, by row of the user-indexed parts (ALS factors, session owners); a forgotten
    /// subject's is replaced by a random one. Kept apart from ``training`` so that a model decoded without its
    /// training data can still forget a subject.
    public internal(set) var userTokens: [String]
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
    public let catalogByID: [String: CatalogItem]
    public let productTypes: [String]
    /// Whom it was trained on, as keyed digests (set by the service that trains it).
    public var provenance: ModelProvenance? = nil
    /// The data it was trained from, to unlearn without a full retrain; dropped with the model.
    public var training: Training? = nil

    /// Trains on a feature-store snapshot. Deterministic for a snapshot and a seed. With `fixing`, the choices made on
    /// held-out data (blend weights, session weight, segment count) are taken from there instead of searched for.
    public static func train(
        snapshot: TrainingSnapshot, catalog: [CatalogItem], options: ServingOptions = ServingOptions(), threads: Int = 2,
        now: Date, fixing chosen: Hyperparameters? = nil, progress: ProgressReporter = .silent
    ) -> ServingModel {
        progress.phase("serving model", "split")
        let split = trainingSplit(snapshot, catalog: catalog)
        var modelOptions = Self.modelOptions(options, threads: threads)
        modelOptions.progress = progress
        let time = Int64(now.timeIntervalSince1970)
        let ranker: any ScoringModel
        let hybridData = split.users.count >= 10 && split.trainMatrix.nonZeroCount >= 100
        // Chosen before (unlearning keeps the choices): as they were, popularity included; else searched for.
        let blend: (weights: [Float], recency: Float?)? =
            if let chosen { chosen.blendWeights.map { ($0, chosen.recency) } } else {
                hybridData ? HybridTrainer(options: modelOptions).chooseWeights(on: split.validationSplit()).blend : nil
            }
        // Before the final fit: the session weight's search fits an item-kNN of its own, and two co-occurrence matrices
        // held at once would set the peak memory of a big shop's training.
        progress.phase("serving model", "sessions")
        let sessions = SessionData.sessions(from: split.train, gap: sessionGap)
        let sessionModel = SessionKNN(sessions: sessions.map(\.items), owners: sessions.map(\.user), items: split.items.count)
        let sessionWeight = chosen?.sessionWeight ?? Self.chooseSessionWeight(split, sessions: sessions, threads: threads)
        if let blend {
            ranker = HybridTrainer(options: modelOptions).fit(split, weights: blend.weights, recency: blend.recency).precomputing(at: time)
        } else {
            ranker = PopularityModel(counts: snapshot.anonymousCounts)
        }
        progress.phase("serving model", "neighbours, segments")
        // The hybrid's item-kNN is the same model as the explanations' neighbours: one fit, one co-occurrence matrix.
        let neighbours = Self.sharedNeighbours(ranker) ?? ItemKNN(similarity: .cosine, neighbours: 50, threads: threads).fit(split.trainMatrix)
        return assemble(
            snapshot: snapshot, split: split, catalog: catalog, options: options, time: time, ranker: ranker, neighbours: neighbours,
            sessionModel: sessionModel, sessionWeight: sessionWeight, segmentCount: chosen?.segmentCount, threads: threads)
    }

    /// The choices training makes on held-out data rather than fits: kept with the model, so that unlearning changes
    /// only what was learned from the data.
    public struct Hyperparameters: Sendable, Equatable {
        /// The hybrid's blend weights (per ``HybridTrainer/componentNames``); nil when the ranker is popularity.
        public var blendWeights: [Float]?
        /// The hybrid's recency scale (``HybridModel/recency``).
        public var recency: Float? = nil
        public var sessionWeight: Float
        /// Behaviour segments' k; nil when no segment model is fitted.
        public var segmentCount: Int?
    }

    /// What the model was trained from, kept in memory to unlearn subjects without a full retrain.
    public struct Training: Sendable {
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
        Hyperparameters(
            blendWeights: (ranker as? HybridModel)?.weights, recency: (ranker as? HybridModel)?.recency, sessionWeight: sessionWeight,
            segmentCount: segmentModel?.centroids.count)
    }

    static func modelOptions(_ options: ServingOptions, threads: Int) -> ModelCatalog.Options {
        var modelOptions = ModelCatalog.Options()
        modelOptions.threads = threads
        modelOptions.als.factors = 32
        modelOptions.contentHashWidth = options.contentHashWidth
        modelOptions.easeMaxItems = options.easeMaxItems
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
        let labelled = profiles.indices.filter { profiles[$0]["age_band"] != nil }
        let references =
            labelled.count <= options.imputationReferences
            ? labelled : labelled.sorted { split.users[$0] < split.users[$1] }.prefix(options.imputationReferences).sorted()
        let imputations = KNNImputer(k: options.imputationNeighbours).impute(
            features: behaviour.rows.map(scaler.transform), labels: profiles.map { $0["age_band"] }, references: references, threads: threads)
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
            blendWeights: weights, users: split.users.count, userTokens: split.users, options: options,
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
    public func forgetting(_ tokens: Set<String>, detach: Bool) -> ServingModel? {
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
        guard detach else { return changed ? model : nil }
        let rows = Set(userTokens.indices.filter { tokens.contains(userTokens[$0]) })
        guard !rows.isEmpty else { return changed ? model : nil }
        // A model decoded from bytes keeps no training data: its token list is all there is to detach them from.
        var training = model.training
        model.training = nil
        for u in rows {
            let placeholder = SubjectToken(digest: (0..<16).map { _ in UInt8.random(in: 0...255) })
            model.userTokens[u] = placeholder.rawValue
            if let t = training?.snapshotIndex[u] {
                training?.split.users[u] = placeholder.rawValue
                training?.snapshot.tokens[t] = placeholder
                training?.snapshot.profiles[t] = [:]
                training?.snapshot.purchases[t] = 0
            }
        }
        training?.forgotten.formUnion(rows)
        model.training = training
        if let hybrid = model.ranker as? HybridModel {
            model.ranker = hybrid.replacing(components: hybrid.components.map { ($0 as? ALSModel)?.zeroingUsers(rows) ?? $0 })
        }
        model.sessionModel = model.sessionModel.removingSessions(of: rows) ?? model.sessionModel
        return model
    }

    /// The weight of session scores against long-term scores that maximises next-item
    /// HitRate@10 on the newest fifth of sessions, with both models fitted on the older sessions only (item-kNN
    /// over each user's history stands in for the long-term model, which would have seen the held-out items).
    static let sessionGap: Int64 = 1800
    static func chooseSessionWeight(
        _ split: EvaluationSplit, sessions: [(user: Int32, start: Int64, items: [Int32])], threads: Int = 1
    ) -> Float {
        guard sessions.count >= 20 else { return 0.5 }
        let cut = sessions[sessions.count * 4 / 5].start
        let older = split.train.filter { $0.time < cut }
        let knn = ItemKNN(similarity: .cosine, neighbours: 50, threads: threads).fit(
            SparseMatrix(users: split.users.count, items: split.items.count, interactions: older)
        ).scoringOnly
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
