import Foundation
import FeatureStore
import Recommender
import Storage
import Synchronization

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
    /// Anonymous popularity (counts from every event, consented or not).
    public let popularity: [Float]
    /// The hybrid's learned weights, stored with the model.
    public let blendWeights: [String: Float]
    public let users: Int

    /// Trains on a feature-store snapshot. Deterministic for a snapshot and a seed.
    public static func train(snapshot: TrainingSnapshot, catalog: [CatalogItem], threads: Int = 2, now: Date = Date()) -> ServingModel {
        let catalogByID = Dictionary(catalog.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let rows = snapshot.interactions.map {
            RatingRow(user: snapshot.tokens[Int($0.user)].rawValue, item: snapshot.items[Int($0.item)], rating: $0.weight, timestamp: $0.time)
        }
        let split = EvaluationSplit(train: rows, test: [], catalog: snapshot.items.map { (id: $0, features: []) })
        var options = ModelCatalog.Options()
        options.threads = threads
        options.als.factors = 32
        let neighbours = ItemKNN(similarity: .cosine, neighbours: 50).fit(split.trainMatrix)
        let ranker: any ScoringModel
        var weights: [String: Float] = [:]
        if split.users.count >= 10 && split.trainMatrix.nonZeroCount >= 100 {
            let hybrid = HybridTrainer(options: options).fit(split).precomputing(at: Int64(now.timeIntervalSince1970))
            ranker = hybrid
            weights = Dictionary(uniqueKeysWithValues: zip(HybridTrainer.componentNames, hybrid.weights))
        } else {
            ranker = PopularityModel(counts: snapshot.anonymousCounts)
            weights = ["popularity": 1]
        }
        let version = "m-" + String(Int64(now.timeIntervalSince1970), radix: 36) + "-" + String(snapshot.interactions.count, radix: 36)
        return ServingModel(
            version: version, items: split.items,
            itemIndex: Dictionary(uniqueKeysWithValues: split.items.enumerated().map { ($1, Int32($0)) }),
            titles: split.items.map { catalogByID[$0]?.title ?? $0 },
            categories: split.items.map { catalogByID[$0]?.category ?? "" },
            available: split.items.map { catalogByID[$0]?.available ?? false },
            ranker: ranker, neighbours: neighbours, popularity: snapshot.anonymousCounts,
            blendWeights: weights, users: split.users.count)
    }
}

/// The current model, swapped atomically after a retrain.
public final class ModelRegistry: Sendable {
    private let current = Mutex<ServingModel?>(nil)
    public init() {}
    public var model: ServingModel? { current.withLock { $0 } }
    public func swap(_ model: ServingModel) { current.withLock { $0 = model } }
}

/// Recommendation responses cached per token with a TTL; dropped on a new event, a consent change, an
/// erasure and a model swap.
public final class RecommendationCache: Sendable {
    struct Entry {
        let expires: Date
        let value: RecommendationResponse
    }
    private let entries = Mutex<[String: [String: Entry]]>([:])
    private let counters = Mutex<(hits: Int, misses: Int)>((0, 0))
    public let ttl: TimeInterval

    public init(ttl: TimeInterval = 30) { self.ttl = ttl }

    func get(token: String, key: String, now: Date) -> RecommendationResponse? {
        let hit = entries.withLock { $0[token]?[key].flatMap { $0.expires > now ? $0.value : nil } }
        counters.withLock { hit == nil ? ($0.misses += 1) : ($0.hits += 1) }
        return hit
    }

    func put(token: String, key: String, value: RecommendationResponse, now: Date) {
        entries.withLock { all in
            if all.count > 100_000 { all.removeAll() }
            all[token, default: [:]][key] = Entry(expires: now.addingTimeInterval(ttl), value: value)
        }
    }

    public func drop(token: String) { entries.withLock { _ = $0.removeValue(forKey: token) } }
    public func clear() { entries.withLock { $0.removeAll() } }
    public func contains(token: String) -> Bool { entries.withLock { $0[token] != nil } }
    public var stats: (hits: Int, misses: Int) { counters.withLock { $0 } }
}
