import Foundation

/// What a model knows about the user it scores for: never an identity, only dense indices.
public struct UserContext: Sendable {
    /// The user's row in the training matrix, when the user was seen in training.
    public var user: Int?
    /// Items the user interacted with, and how strongly.
    public var items: [Int32]
    public var weights: [Float]
    /// The reference time for time-aware models (seconds since the epoch): "now" when serving.
    public var time: Int64
    /// When the user last interacted with each of `items` (empty when unknown), for recency weighting.
    public var itemTimes: [Int64]
    /// Words the user searched for, as signed feature-hash buckets (`±(bucket + 1)`) in the content model's
    /// space; content-based models match them against item text.
    public var hashedTerms: [Int32] = []

    public init(user: Int?, items: [Int32], weights: [Float]? = nil, time: Int64 = 0, itemTimes: [Int64] = []) {
        self.user = user
        self.items = items
        self.weights = weights ?? [Float](repeating: 1, count: items.count)
        self.time = time
        self.itemTimes = itemTimes
    }

    /// The same history with each item's weight multiplied by `exp(−rank / scale)`, where rank counts the history's
    /// items seen strictly later (0 for the latest, equal for items seen at the same moment): what someone looked at
    /// last says most about what comes next. Unchanged without item times.
    public func weightedByRecency(scale: Float) -> UserContext {
        guard itemTimes.count == items.count, !items.isEmpty else { return self }
        let newestFirst = itemTimes.sorted(by: >)
        var copy = self
        for (k, t) in itemTimes.enumerated() {
            // Items later than t: the position of t's first occurrence in the descending order.
            var lo = 0, hi = newestFirst.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if newestFirst[mid] > t { lo = mid + 1 } else { hi = mid }
            }
            copy.weights[k] *= expf(-Float(lo) / scale)
        }
        return copy
    }
}

/// A trained model that scores every item of the catalog for a user.
public protocol ScoringModel: Sendable {
    /// A short name (`als`, `ease`, `item-knn`, …).
    var name: String { get }
    /// Number of items scored.
    var itemCount: Int { get }
    /// Writes one score per item into `out` (count == itemCount); higher is better.
    func score(_ context: UserContext, into out: UnsafeMutableBufferPointer<Float>)
}

extension ScoringModel {
    /// The top `k` items for `context`, skipping `excluded` items.
    public func recommend(_ context: UserContext, k: Int, excluded: Set<Int32> = []) -> TopK {
        var scores = [Float](repeating: 0, count: itemCount)
        return scores.withUnsafeMutableBufferPointer { out in
            score(context, into: out)
            var mask = [Bool](repeating: false, count: itemCount)
            for i in context.items where Int(i) < itemCount { mask[Int(i)] = true }
            for i in excluded where Int(i) < itemCount && i >= 0 { mask[Int(i)] = true }
            return TopK.select(scores: UnsafeBufferPointer(out), k: k) { mask[$0] }
        }
    }
}

/// A small, fast, seedable generator (SplitMix64) so that training is reproducible.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    public mutating func nextFloat() -> Float { Float(next() >> 40) * (1.0 / Float(1 << 24)) }
}
