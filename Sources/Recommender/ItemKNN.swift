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
    /// Threads for the co-occurrences and the ranking of neighbours.
    public var threads: Int

    public init(similarity: Similarity = .cosine, neighbours: Int = 50, k1: Float = 1.2, b: Float = 0.75, threads: Int = 1) {
        self.threads = max(threads, 1)
        self.similarity = similarity
        self.neighbours = neighbours
        self.k1 = k1
        self.b = b
    }

    public func fit(_ userItems: SparseMatrix) -> ItemKNNModel {
        switch similarity {
        case .cosine:
            // Raw co-occurrences, kept: cosine is C_ij / √(C_ii·C_jj), so removing a user is a subtraction.
            let cooccurrence = Cooccurrence(userItems, threads: threads)
            let rows = cooccurrence.rankAll(keep: neighbours, cosine: true, threads: threads)
            return ItemKNNModel(
                name: "item-knn", similarities: Self.matrix(rows, items: cooccurrence.items), neighbours: neighbours,
                cooccurrence: cooccurrence)
        case .bm25:
            // BM25's weights depend on every user (document frequencies, average length): nothing to subtract.
            let cooccurrence = Cooccurrence(weightedItemUsers(userItems).transposed(), threads: threads)
            let rows = cooccurrence.rankAll(keep: neighbours, cosine: false, threads: threads)
            return ItemKNNModel(
                name: "item-knn-bm25", similarities: Self.matrix(rows, items: cooccurrence.items), neighbours: neighbours,
                cooccurrence: nil)
        }
    }

    static func matrix(_ rows: [(indices: [Int32], values: [Float])], items n: Int) -> SparseMatrix {
        var offsets = [0], indices = [Int32](), values = [Float]()
        for row in rows {
            indices += row.indices
            values += row.values
            offsets.append(indices.count)
        }
        return SparseMatrix(rows: n, columns: n, offsets: offsets, indices: indices, values: values)
    }

    /// Items × users with BM25 weights (as in `implicit`'s BM25Recommender).
    func weightedItemUsers(_ userItems: SparseMatrix) -> SparseMatrix {
        let itemUsers = userItems.transposed()
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

/// Item × item co-occurrence `C = XᵀX` over users, in Double so that a subtraction leaves what a sum without the
/// user would have given; sparse rows sorted by column.
struct Cooccurrence: Sendable {
    let items: Int
    let offsets: [Int]
    let indices: [Int32]
    var values: [Double]

    /// Dense when items² doubles are affordable (the user-pair loop is the fastest there), else row by row through
    /// each item's users (memory O(non-zeros of C)).
    init(_ userItems: SparseMatrix, threads: Int = 1) {
        let n = userItems.columns
        let (offsets, indices, values) = n <= 4096 ? Self.denseProducts(userItems, threads: threads) : Self.sparseProducts(userItems)
        self.init(items: n, offsets: offsets, indices: indices, values: values)
    }

    /// Co-occurrence rows (CSR) through a dense items × items matrix, rows split over threads.
    static func denseProducts(_ userItems: SparseMatrix, threads: Int) -> (offsets: [Int], indices: [Int32], values: [Double]) {
        let n = userItems.columns
        var offsets = [0], indices = [Int32](), values = [Double]()
        var dense = [Double](repeating: 0, count: n * n)
        dense.withShared { shared in
            // Each thread owns a range of rows and takes from every user only the pairs that land in it.
            parallelChunks(count: n, threads: threads) { mine in
                userItems.indices.withUnsafeBufferPointer { columns in
                    userItems.values.withUnsafeBufferPointer { weights in
                        for u in 0..<userItems.rows {
                            let lo = userItems.offsets[u], hi = userItems.offsets[u + 1]
                            for p in lo..<hi where mine.contains(Int(columns[p])) {
                                let row = shared.base + Int(columns[p]) * n, wi = Double(weights[p])
                                for q in lo..<hi { row[Int(columns[q])] += wi * Double(weights[q]) }
                            }
                        }
                    }
                }
            }
        }
        dense.withUnsafeMutableBufferPointer { d in
            var nonZero = 0
            for x in d where x != 0 { nonZero += 1 }
            indices.reserveCapacity(nonZero)
            values.reserveCapacity(nonZero)
            for i in 0..<n {
                let row = d.baseAddress! + i * n
                for j in 0..<n where row[j] != 0 {
                    indices.append(Int32(j))
                    values.append(row[j])
                }
                offsets.append(indices.count)
            }
        }
        return (offsets, indices, values)
    }

    /// Co-occurrence rows (CSR) one item at a time through its users, with one dense accumulator.
    static func sparseProducts(_ userItems: SparseMatrix) -> (offsets: [Int], indices: [Int32], values: [Double]) {
        let n = userItems.columns
        var offsets = [0], indices = [Int32](), values = [Double]()
        let itemUsers = userItems.transposed()
        var accumulator = [Double](repeating: 0, count: n)
        var touched = [Bool](repeating: false, count: n)
        var list: [Int32] = []
        userItems.offsets.withUnsafeBufferPointer { rowStart in
            userItems.indices.withUnsafeBufferPointer { columns in
                userItems.values.withUnsafeBufferPointer { weights in
                    accumulator.withUnsafeMutableBufferPointer { acc in
                        touched.withUnsafeMutableBufferPointer { seen in
                            for i in 0..<n {
                                for p in itemUsers.offsets[i]..<itemUsers.offsets[i + 1] {
                                    let u = Int(itemUsers.indices[p]), vi = Double(itemUsers.values[p])
                                    for q in rowStart[u]..<rowStart[u + 1] {
                                        let j = Int(columns[q])
                                        acc[j] += vi * Double(weights[q])
                                        if !seen[j] {
                                            seen[j] = true
                                            list.append(Int32(j))
                                        }
                                    }
                                }
                                // Columns in order: a pass over the row when it is dense, a sort of the few touched when not.
                                if list.count > n / 8 {
                                    for j in 0..<n where seen[j] {
                                        indices.append(Int32(j))
                                        values.append(acc[j])
                                        acc[j] = 0
                                        seen[j] = false
                                    }
                                } else {
                                    list.sort()
                                    for j in list {
                                        indices.append(j)
                                        values.append(acc[Int(j)])
                                        acc[Int(j)] = 0
                                        seen[Int(j)] = false
                                    }
                                }
                                list.removeAll(keepingCapacity: true)
                                offsets.append(indices.count)
                            }
                        }
                    }
                }
            }
        }
        return (offsets, indices, values)
    }

    private init(items n: Int, offsets: [Int], indices: [Int32], values: [Double]) {
        items = n
        self.offsets = offsets
        self.indices = indices
        self.values = values
        diagonal = [Double](repeating: 0, count: n)
        for i in 0..<n { diagonal[i] = position(i, Int32(i)).map { values[$0] } ?? 0 }
    }

    /// `C_ii`, the squared norm of item i's user vector.
    private(set) var diagonal: [Double]

    func position(_ i: Int, _ j: Int32) -> Int? {
        var lo = offsets[i], hi = offsets[i + 1]
        while lo < hi {
            let mid = (lo + hi) / 2
            if indices[mid] < j { lo = mid + 1 } else { hi = mid }
        }
        return lo < offsets[i + 1] && indices[lo] == j ? lo : nil
    }

    /// Every item's neighbours, rows ranked in parallel.
    func rankAll(keep: Int, cosine: Bool, threads: Int) -> [(indices: [Int32], values: [Float])] {
        var rows = [(indices: [Int32], values: [Float])](repeating: ([], []), count: items)
        let this = self
        rows.withShared { out in
            parallelChunks(count: this.items, threads: threads) { range in
                for i in range { (out.base + i).pointee = this.neighbours(of: i, keep: keep, cosine: cosine) }
            }
        }
        return rows
    }

    /// Item `i`'s `keep` most similar items (itself included), by ascending column for cache-friendly scoring.
    func neighbours(of i: Int, keep: Int, cosine: Bool) -> (indices: [Int32], values: [Float]) {
        let di = diagonal[i]
        guard !cosine || di > 0 else { return ([], []) }
        var top = TopK(k: keep)
        for p in offsets[i]..<offsets[i + 1] {
            let j = indices[p]
            var s = values[p]
            if cosine {
                let dj = diagonal[Int(j)]
                guard dj > 0 else { continue }
                s /= (di * dj).squareRoot()
            }
            // A subtraction may leave rounding dust where a sum without the user gives zero.
            guard s > 1e-9 else { continue }
            let f = Float(s)
            if f > top.threshold { top.offer(j, f) }
        }
        let pairs = zip(top.items, top.scores).sorted { $0.0 < $1.0 }
        return (pairs.map(\.0), pairs.map(\.1))
    }

    /// Item `i`'s `keep` most similar (cosine) among `candidates` (ascending columns).
    func neighbours(of i: Int, among candidates: [Int32], keep: Int) -> (indices: [Int32], values: [Float]) {
        let di = diagonal[i]
        guard di > 0 else { return ([], []) }
        var top = TopK(k: keep)
        for j in candidates {
            let dj = diagonal[Int(j)]
            guard dj > 0, let p = position(i, j) else { continue }
            let s = values[p] / (di * dj).squareRoot()
            guard s > 1e-9 else { continue }
            let f = Float(s)
            if f > top.threshold { top.offer(j, f) }
        }
        let pairs = zip(top.items, top.scores).sorted { $0.0 < $1.0 }
        return (pairs.map(\.0), pairs.map(\.1))
    }

    /// Subtracts one user's outer product `x xᵀ`.
    mutating func subtract(items: ArraySlice<Int32>, values weights: ArraySlice<Float>) {
        let offsets = self.offsets
        indices.withUnsafeBufferPointer { columns in
            values.withUnsafeMutableBufferPointer { c in
                for (i, wi) in zip(items, weights) {
                    // The user's items are sorted and all in row i: each is searched for after the previous one.
                    var lo = offsets[Int(i)]
                    let end = offsets[Int(i) + 1]
                    for (j, wj) in zip(items, weights) {
                        var hi = end
                        while lo < hi {
                            let mid = (lo + hi) / 2
                            if columns[mid] < j { lo = mid + 1 } else { hi = mid }
                        }
                        guard lo < end, columns[lo] == j else { continue }
                        c[lo] -= Double(wi) * Double(wj)
                        // Rounding dust where a sum without the user gives zero would read as a (tiny) co-occurrence.
                        if abs(c[lo]) < 1e-9 { c[lo] = 0 }
                        if j == i { diagonal[Int(i)] = c[lo] }
                    }
                }
            }
        }
    }
}

/// Pruned item-item similarities.
public struct ItemKNNModel: ScoringModel {
    public let name: String
    /// Row i: item i's neighbours and their similarities.
    public let similarities: SparseMatrix
    public var itemCount: Int { similarities.rows }
    public let neighbours: Int
    /// Kept for cosine models, to unlearn users by subtraction.
    let cooccurrence: Cooccurrence?

    init(name: String, similarities: SparseMatrix, neighbours: Int, cooccurrence: Cooccurrence?) {
        self.name = name
        self.similarities = similarities
        self.neighbours = neighbours
        self.cooccurrence = cooccurrence
    }

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
