/// Selects the `k` highest scores with an insertion buffer: for small k this beats a sort or a heap,
/// because most candidates fail the first comparison against the current k-th score.
public struct TopK {
    public private(set) var items: [Int32]
    public private(set) var scores: [Float]
    public let k: Int

    public init(k: Int) {
        precondition(k > 0)
        self.k = k
        items = []
        scores = []
        items.reserveCapacity(k + 1)
        scores.reserveCapacity(k + 1)
    }

    /// The score a candidate must beat to enter (−∞ until the buffer is full).
    @inlinable public var threshold: Float { scores.count < k ? -.infinity : scores[scores.count - 1] }

    /// Offers one candidate. Ties keep the earlier (lower) item index first.
    @inline(__always)
    public mutating func offer(_ item: Int32, _ score: Float) {
        if scores.count == k {
            guard score > scores[k - 1] else { return }
            scores.removeLast()
            items.removeLast()
        }
        var position = scores.count
        while position > 0 && scores[position - 1] < score { position -= 1 }
        scores.insert(score, at: position)
        items.insert(item, at: position)
    }

    /// Top-k over a dense score row, skipping items where `excluded[item]` is true.
    public static func select(scores row: UnsafeBufferPointer<Float>, k: Int, excluded: (Int) -> Bool) -> TopK {
        var top = TopK(k: k)
        for i in 0..<row.count {
            let s = row[i]
            if s > top.threshold && !excluded(i) && !s.isNaN { top.offer(Int32(i), s) }
        }
        return top
    }
}
