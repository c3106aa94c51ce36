import Foundation

/// Popularity: how many users interacted with each item. Needs no consent when built from anonymous counts.
public struct PopularityModel: ScoringModel {
    public let name = "popularity"
    public let counts: [Float]
    public var itemCount: Int { counts.count }

    public init(counts: [Float]) { self.counts = counts }

    public init(_ userItems: SparseMatrix) {
        counts = userItems.columnCounts().map(Float.init)
    }

    public func score(_ context: UserContext, into out: UnsafeMutableBufferPointer<Float>) {
        for i in 0..<counts.count { out[i] = counts[i] }
    }
}

/// Trending: interaction counts decayed exponentially with age, as seen at the context's reference time.
/// Only events at or before that time count, so it never looks into the future.
public struct TrendingModel: ScoringModel {
    public let name = "trending"
    public let itemCount: Int
    /// Events sorted by time.
    let times: [Int64]
    let items: [Int32]
    /// Half-life of an event's weight, in seconds.
    public let halfLife: Double
    /// Scores computed once for a serving time: reused for contexts within `reuseWindow` seconds of it,
    /// so that a request does not rescan every event.
    let precomputed: (time: Int64, scores: [Float])?
    static let reuseWindow: Int64 = 3600

    public init(itemCount: Int, interactions: [Interaction], halfLife: Double) {
        let sorted = interactions.sorted { ($0.time, $0.item) < ($1.time, $1.item) }
        self.itemCount = itemCount
        times = sorted.map(\.time)
        items = sorted.map(\.item)
        self.halfLife = halfLife
        precomputed = nil
    }

    init(itemCount: Int, sortedTimes: [Int64], items: [Int32], halfLife: Double) {
        self.itemCount = itemCount
        times = sortedTimes
        self.items = items
        self.halfLife = halfLife
        precomputed = nil
    }

    init(_ base: TrendingModel, precomputedAt time: Int64) {
        itemCount = base.itemCount
        times = base.times
        items = base.items
        halfLife = base.halfLife
        var scores = [Float](repeating: 0, count: base.itemCount)
        scores.withUnsafeMutableBufferPointer { base.score(UserContext(user: nil, items: [], time: time), into: $0) }
        precomputed = (time, scores)
    }

    /// The same model with its scores fixed for serving around `time` (recomputed on the next retrain).
    public func precomputing(at time: Int64) -> TrendingModel { TrendingModel(self, precomputedAt: time) }

    public func score(_ context: UserContext, into out: UnsafeMutableBufferPointer<Float>) {
        if let precomputed, abs(context.time - precomputed.time) < Self.reuseWindow {
            for i in 0..<itemCount { out[i] = precomputed.scores[i] }
            return
        }
        for i in 0..<itemCount { out[i] = 0 }
        // Binary search for the last event at or before the reference time.
        var lo = 0, hi = times.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if times[mid] <= context.time { lo = mid + 1 } else { hi = mid }
        }
        let rate = log(2) / halfLife
        // Events older than 20 half-lives weigh less than 1e-6: stop there.
        let horizon = context.time - Int64(20 * halfLife)
        var p = lo - 1
        while p >= 0 && times[p] >= horizon {
            out[Int(items[p])] += Float(exp(-rate * Double(context.time - times[p])))
            p -= 1
        }
    }
}
