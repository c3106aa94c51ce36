import Foundation

/// Item-item neighbourhood model: each item keeps its `neighbours` most similar items; a user's score for
/// an item is the similarity-weighted sum over the items in the user's history.
public struct ItemKNN: Sendable {
    public enum Similarity: String, Sendable, CaseIterable {
        /// Cosine of the items' user vectors.
        case cosine
        /// Co-occurrence of BM25-weighted item vectors (as in `implicit`'s BM25Recommender).
        case bm25
    }

    public var similarity: Similarity
    public var neighbours: Int
    public var k1: Float
    public var b: Float

    public init(similarity: Similarity = .cosine, neighbours: Int = 50, k1: Float = 1.2, b: Float = 0.75) {
        self.similarity = similarity
        self.neighbours = neighbours
        self.k1 = k1
        self.b = b
    }

    public func fit(_ userItems: SparseMatrix) -> ItemKNNModel {
        let itemUsers = weightedItemUsers(userItems)
        let n = userItems.columns
        // Co-occurrence through the users: for each user, every pair of its items.
        let userRows = itemUsers.transposed()
        var dense = [Float](repeating: 0, count: n * n)
        dense.withUnsafeMutableBufferPointer { d in
            for u in 0..<userRows.rows {
                let lo = userRows.offsets[u], hi = userRows.offsets[u + 1]
                for p in lo..<hi {
                    let i = Int(userRows.indices[p]), wi = userRows.values[p]
                    let row = d.baseAddress! + i * n
                    for q in lo..<hi { row[Int(userRows.indices[q])] += wi * userRows.values[q] }
                }
            }
        }
        var offsets = [0], indices = [Int32](), values = [Float]()
        dense.withUnsafeBufferPointer { d in
            for i in 0..<n {
                var top = TopK(k: neighbours)
                let row = d.baseAddress! + i * n
                for j in 0..<n where row[j] > 0 && row[j] > top.threshold { top.offer(Int32(j), row[j]) }
                // Store by ascending column for cache-friendly scoring.
                let pairs = zip(top.items, top.scores).sorted { $0.0 < $1.0 }
                indices.append(contentsOf: pairs.map(\.0))
                values.append(contentsOf: pairs.map(\.1))
                offsets.append(indices.count)
            }
        }
        let sim = SparseMatrix(rows: n, columns: n, offsets: offsets, indices: indices, values: values)
        return ItemKNNModel(name: similarity == .cosine ? "item-knn" : "item-knn-bm25", similarities: sim)
    }

    /// Items × users with the chosen weighting applied.
    func weightedItemUsers(_ userItems: SparseMatrix) -> SparseMatrix {
        let itemUsers = userItems.transposed()
        switch similarity {
        case .cosine:
            var values = itemUsers.values
            for i in 0..<itemUsers.rows {
                let range = itemUsers.offsets[i]..<itemUsers.offsets[i + 1]
                let norm = range.reduce(Float(0)) { $0 + values[$1] * values[$1] }.squareRoot()
                if norm > 0 { for p in range { values[p] /= norm } }
            }
            return SparseMatrix(rows: itemUsers.rows, columns: itemUsers.columns, offsets: itemUsers.offsets, indices: itemUsers.indices, values: values)
        case .bm25:
            let items = Float(itemUsers.rows)
            let userDocumentFrequency = itemUsers.columnCounts()
            let lengths = (0..<itemUsers.rows).map { i in
                (itemUsers.offsets[i]..<itemUsers.offsets[i + 1]).reduce(Float(0)) { $0 + itemUsers.values[$1] }
            }
            let average = max(lengths.reduce(0, +) / max(items, 1), 1e-9)
            var values = itemUsers.values
            for i in 0..<itemUsers.rows {
                let norm = (1 - b) + b * lengths[i] / average
                for p in itemUsers.offsets[i]..<itemUsers.offsets[i + 1] {
                    let idf = logf(items) - log1pf(Float(userDocumentFrequency[Int(itemUsers.indices[p])]))
                    values[p] = values[p] * (k1 + 1) / (k1 * norm + values[p]) * idf
                }
            }
            return SparseMatrix(rows: itemUsers.rows, columns: itemUsers.columns, offsets: itemUsers.offsets, indices: itemUsers.indices, values: values)
        }
    }
}

/// Pruned item-item similarities.
public struct ItemKNNModel: ScoringModel {
    public let name: String
    /// Row i: item i's neighbours and their similarities.
    public let similarities: SparseMatrix
    public var itemCount: Int { similarities.rows }

    public func score(_ context: UserContext, into out: UnsafeMutableBufferPointer<Float>) {
        for i in 0..<out.count { out[i] = 0 }
        for (item, weight) in zip(context.items, context.weights) where Int(item) < itemCount {
            let j = Int(item)
            for p in similarities.offsets[j]..<similarities.offsets[j + 1] {
                out[Int(similarities.indices[p])] += weight * similarities.values[p]
            }
        }
    }

    /// The history item that contributes most to `item`'s score: the "because you viewed X" of an explanation.
    public func strongestReason(for item: Int32, in context: UserContext) -> Int32? {
        var best: (Int32, Float)?
        for (h, w) in zip(context.items, context.weights) where Int(h) < itemCount {
            let j = Int(h)
            let range = similarities.offsets[j]..<similarities.offsets[j + 1]
            if let p = range.first(where: { similarities.indices[$0] == item }) {
                let s = similarities.values[p] * w
                if s > (best?.1 ?? 0) { best = (h, s) }
            }
        }
        return best?.0
    }
}
