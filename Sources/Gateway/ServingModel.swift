import Foundation
import FeatureStore
import Recommender
import Storage
import Synchronization

/// Serving choices an operator sets in the configuration file.
public struct ServingOptions: Sendable, Equatable {
    /// Interaction kinds whose items are never recommended again to the same subject (bought, rated…).
    public var excludeInteractedKinds: Set<String> = ["page_view", "purchase", "search_click", "rating", "click", "add_to_cart"]
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
    public let version: String
    public let items: [String]
    public let itemIndex: [String: Int32]
    public let titles: [String]
    public let categories: [String]
    public let available: [Bool]
    /// The ranker (the hybrid once enough data exists; popularity otherwise).
    public let ranker: any ScoringModel
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
    public let sessionModel: SessionKNN
    public let sessionWeight: Float
    /// Age bands inferred for training subjects who gave none, by token. Used for segment counts only;
    /// an export lists them as inferred, never as facts.
    public let imputedAgeBands: [String: KNNImputer.Imputed]
    /// Behaviour segments (k-means, k by silhouette) for per-segment strategies; nil with too few subjects.
    public let segmentModel: SegmentModel?
    /// Per item: whether each configured strategy favours it (strategy → mask).
    public let strategyItems: [SegmentStrategy: [Bool]]
    let catalogByID: [String: CatalogItem]
    let productTypes: [String]

    /// Trains on a feature-store snapshot. Deterministic for a snapshot and a seed.
    public static func train(snapshot: TrainingSnapshot, catalog: [CatalogItem], options: ServingOptions = ServingOptions(), threads: Int = 2,
                             now: Date = Date()) -> ServingModel {
        let catalogByID = Dictionary(catalog.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let rows = snapshot.interactions.map {
            RatingRow(user: snapshot.tokens[Int($0.user)].rawValue, item: snapshot.items[Int($0.item)], rating: $0.weight, timestamp: $0.time)
        }
        let split = EvaluationSplit(train: rows, test: [], catalog: snapshot.items.map { id in
            (id: id, content: catalogByID[id].map { ItemContent(category: $0.category, brand: $0.brand, attributes: $0.attributes, tags: $0.tags, title: $0.title) })
        })
        var modelOptions = ModelCatalog.Options()
        modelOptions.threads = threads
        modelOptions.als.factors = 32
        modelOptions.contentHashWidth = options.contentHashWidth
        modelOptions.contentSimilarity = options.contentSimilarity
        let neighbours = ItemKNN(similarity: .cosine, neighbours: 50).fit(split.trainMatrix)
        let content = ContentModel(items: split.itemContent, width: options.contentHashWidth, similarity: options.contentSimilarity)
        let time = Int64(now.timeIntervalSince1970)
        let ranker: any ScoringModel
        var weights: [String: Float] = [:]
        if split.users.count >= 10 && split.trainMatrix.nonZeroCount >= 100 {
            let hybrid = HybridTrainer(options: modelOptions).fit(split).precomputing(at: time)
            ranker = hybrid
            weights = Dictionary(uniqueKeysWithValues: zip(HybridTrainer.componentNames, hybrid.weights))
        } else {
            ranker = PopularityModel(counts: snapshot.anonymousCounts)
            weights = ["popularity": 1]
        }
        var trending = [Float](repeating: 0, count: split.items.count)
        trending.withUnsafeMutableBufferPointer {
            TrendingModel(itemCount: split.items.count, interactions: split.train, halfLife: modelOptions.trendingHalfLife)
                .score(UserContext(user: nil, items: [], time: time), into: $0)
        }
        // Behaviour → scaled features → the age band of subjects who gave none, from their nearest neighbours.
        let typeNames = Array(Set(split.itemContent.map(\.productType).filter { !$0.isEmpty })).sorted()
        let typeIndex = Dictionary(uniqueKeysWithValues: typeNames.enumerated().map { ($1, $0) })
        let behaviour = BehaviourFeatures(matrix: split.trainMatrix, itemTypes: split.itemContent.map { typeIndex[$0.productType] ?? -1 },
                                          typeNames: typeNames, itemPrices: split.items.map { catalogByID[$0]?.price }, times: split.trainTimes, now: time)
        let scaler = FeatureScaler(kind: .zScore, fittedOn: behaviour.rows)
        let userIndex = Dictionary(uniqueKeysWithValues: split.users.enumerated().map { ($1, $0) })
        var profiles = [[String: String]](repeating: [:], count: split.users.count)
        for (t, token) in snapshot.tokens.enumerated() {
            if let u = userIndex[token.rawValue], t < snapshot.profiles.count { profiles[u] = snapshot.profiles[t] }
        }
        let imputations = KNNImputer(k: options.imputationNeighbours).impute(features: behaviour.rows.map(scaler.transform),
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
        let (sessionModel, sessionWeight) = Self.fitSessions(split)
        let segmentModel = options.segmentStrategies.isEmpty && !options.segmentsForCampaigns ? nil
            : SegmentModel.fit(snapshot: snapshot, catalog: catalog, now: now)
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
        let version = "m-" + String(time, radix: 36) + "-" + String(snapshot.interactions.count, radix: 36)
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
            productTypes: Array(Set(catalog.map { String($0.category.split(separator: "/").first ?? "") })).sorted())
    }

    /// The session model, and the weight of session scores against long-term scores that maximises next-item
    /// HitRate@10 on the newest fifth of sessions, with both models fitted on the older sessions only (item-kNN
    /// over each user's history stands in for the long-term model, which would have seen the held-out items).
    static let sessionGap: Int64 = 1800
    static func fitSessions(_ split: EvaluationSplit) -> (SessionKNN, Float) {
        let sessions = SessionData.sessions(from: split.train, gap: sessionGap)
        let all = SessionKNN(sessions: sessions.map(\.items), items: split.items.count)
        guard sessions.count >= 20 else { return (all, 0.5) }
        let cut = sessions[sessions.count * 4 / 5].start
        let older = split.train.filter { $0.time < cut }
        let knn = ItemKNN(similarity: .cosine, neighbours: 50).fit(SparseMatrix(users: split.users.count, items: split.items.count, interactions: older))
        let sknn = SessionKNN(sessions: sessions.filter { $0.start < cut }.map(\.items), items: split.items.count)
        var history = [[Int32]](repeating: [], count: split.users.count)
        for x in older { history[Int(x.user)].append(x.item) }
        // Held-out cases: (user, session prefix, next item), at most 400.
        let cases = sessions.filter { $0.start >= cut }.prefix(400).map { (user: Int($0.user), prefix: Array($0.items.dropLast()), target: $0.items.last!) }
        guard !cases.isEmpty else { return (all, 0.5) }
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
        return (all, best.weight)
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
    private let current = Mutex<(stable: ServingModel?, canary: ServingModel?)>((nil, nil))
    public init() {}
    public var model: ServingModel? { current.withLock { $0.stable } }
    /// The stable and canary models' versions, without copying a model (a copy retains every one of its
    /// arrays and tables: measurable on a cache hit, which needs only the version).
    var versions: (stable: String?, canary: String?) { current.withLock { ($0.stable?.version, $0.canary?.version) } }
    /// A newly trained model serving a share of subjects until it is promoted or rolled back.
    public var canary: ServingModel? { current.withLock { $0.canary } }
    /// Makes `model` the one every subject gets (and ends any canary).
    public func swap(_ model: ServingModel) { current.withLock { $0 = (model, nil) } }
    public func setCanary(_ model: ServingModel) { current.withLock { $0.canary = model } }
    public func dropCanary() { current.withLock { $0.canary = nil } }
}

/// Recommendation responses cached per token with a TTL; dropped on a new event, a consent change, an
/// erasure and a model swap. Entries are kept rendered, so a hit only splices in its request id and subject.
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
    }
    struct Entry {
        let expires: Date
        let value: RenderedRecommendation
    }
    private let entries = Mutex<[String: [Key: Entry]]>([:])
    private let links = Mutex<[String: (canonical: SubjectToken, expires: Date)]>([:])
    public let ttl: TimeInterval
    /// More entries than this and the map starts over: a bound on memory, not an eviction policy.
    static let capacity = 100_000

    public init(ttl: TimeInterval = 30) { self.ttl = ttl }

    func get(token: String, key: Key, now: Date) -> RenderedRecommendation? {
        entries.withLock { $0[token]?[key].flatMap { $0.expires > now ? $0.value : nil } }
    }

    func put(token: String, key: Key, value: RenderedRecommendation, now: Date) {
        guard ttl > 0 else { return }
        entries.withLock { all in
            if all.count > Self.capacity { all.removeAll() }
            all[token, default: [:]][key] = Entry(expires: now.addingTimeInterval(ttl), value: value)
        }
    }

    /// The canonical token `source` resolved to within the TTL, if remembered.
    func canonical(of source: SubjectToken, now: Date) -> SubjectToken? {
        links.withLock { $0[source.rawValue].flatMap { $0.expires > now ? $0.canonical : nil } }
    }

    func remember(source: SubjectToken, canonical: SubjectToken, now: Date) {
        guard ttl > 0 else { return }
        links.withLock { all in
            if all.count > Self.capacity { all.removeAll() }
            all[source.rawValue] = (canonical, now.addingTimeInterval(ttl))
        }
    }

    /// Forgets every remembered link (after a link, an unlink or an erasure).
    func forgetLinks() { links.withLock { $0.removeAll() } }

    public func drop(token: String) { entries.withLock { _ = $0.removeValue(forKey: token) } }
    public func clear() {
        entries.withLock { $0.removeAll() }
        forgetLinks()
    }
    public func contains(token: String) -> Bool { entries.withLock { $0[token] != nil } }
}
