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

    public init(itemCount: Int, interactions: [Interaction], halfLife: Double) {
        let sorted = interactions.sorted { ($0.time, $0.item) < ($1.time, $1.item) }
        self.itemCount = itemCount
        times = sorted.map(\.time)
        items = sorted.map(\.item)
        self.halfLife = halfLife
    }

    public func score(_ context: UserContext, into out: UnsafeMutableBufferPointer<Float>) {
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
