import Foundation
import Synchronization

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

/// Item × item co-occurrence `C = XᵀX` over users, kept so that a subtraction leaves what a sum without the user would
/// have given; sparse rows sorted by column.
struct Cooccurrence: Sendable {
    let items: Int
    let offsets: [Int]
    let indices: [Int32]
    /// The sums in Float when the weights are whole numbers and no sum can reach 2²⁴ (Float holds every sum and every
    /// subtraction exactly then): half the memory of the largest table a big shop's training keeps. Else in `sums`.
    private(set) var counts: [Float]
    /// The sums in Double, when `counts` could not hold them exactly (empty otherwise).
    private(set) var sums: [Double]
    let isNarrow: Bool

    /// Dense when items² doubles are affordable (the user-pair loop is the fastest there), else row by row through
    /// each item's users (memory O(non-zeros of C)).
    init(_ userItems: SparseMatrix, threads: Int = 1) {
        let n = userItems.columns
        if Self.fitsInFloat(userItems) {
            let (offsets, indices, counts) =
                n <= 4096
                ? Self.denseProducts(userItems, threads: threads, as: Float.self)
                : Self.sparseProducts(userItems, threads: threads, as: Float.self)
            self.init(items: n, offsets: offsets, indices: indices, counts: counts, sums: [])
        } else {
            let (offsets, indices, sums) =
                n <= 4096
                ? Self.denseProducts(userItems, threads: threads, as: Double.self)
                : Self.sparseProducts(userItems, threads: threads, as: Double.self)
            self.init(items: n, offsets: offsets, indices: indices, counts: [], sums: sums)
        }
    }

    /// Whole weights whose largest product, summed over every user, stays below 2²⁴.
    static func fitsInFloat(_ userItems: SparseMatrix) -> Bool {
        var largest: Float = 0
        for w in userItems.values {
            guard w == w.rounded() else { return false }
            largest = max(largest, abs(w))
        }
        return Double(largest) * Double(largest) * Double(userItems.rows) < 16_777_216
    }

    @inline(__always) func value(_ p: Int) -> Double { isNarrow ? Double(counts[p]) : sums[p] }

    /// Co-occurrence rows (CSR) through a dense items × items matrix, rows split over threads.
    static func denseProducts<V: BinaryFloatingPoint & Sendable>(
        _ userItems: SparseMatrix, threads: Int, as: V.Type
    ) -> (
        offsets: [Int], indices: [Int32], values: [V]
    ) {
        let n = userItems.columns
        var offsets = [0], indices = [Int32](), values = [V]()
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
                    values.append(V(row[j]))
                }
                offsets.append(indices.count)
            }
        }
        return (offsets, indices, values)
    }

    /// Co-occurrence rows (CSR) one item at a time through its users, in two passes over the same products: the
    /// first counts each row's columns, so that the rows are written into arrays of exactly their final size (grown
    /// by appending, the arrays' doubling held up to twice the co-occurrence while it was built, and kept the slack);
    /// the second fills them. Rows are split over threads in blocks of about equal work, each thread with its own
    /// dense accumulator.
    static func sparseProducts<V: BinaryFloatingPoint & Sendable>(
        _ userItems: SparseMatrix, threads: Int, as: V.Type
    ) -> (
        offsets: [Int], indices: [Int32], values: [V]
    ) {
        let n = userItems.columns
        guard !userItems.indices.isEmpty else { return ([Int](repeating: 0, count: n + 1), [], []) }
        let itemUsers = userItems.transposed()
        // A row's work: the history lengths of its item's users.
        let lengths = (0..<userItems.rows).map { userItems.offsets[$0 + 1] - userItems.offsets[$0] }
        var work = [Int](repeating: 0, count: n + 1)
        for i in 0..<n {
            var w = 0
            for p in itemUsers.offsets[i]..<itemUsers.offsets[i + 1] { w += lengths[Int(itemUsers.indices[p])] }
            work[i + 1] = work[i] + w
        }
        let blocks = Self.blocks(cumulativeWork: work, count: max(1, threads) * 8)
        var offsets = [Int](repeating: 0, count: n + 1)
        offsets.withShared { counts in
            Self.eachRow(userItems, itemUsers, blocks: blocks, threads: threads) { i, columns, _, _ in counts.base[i + 1] = columns.count }
        }
        for i in 0..<n { offsets[i + 1] += offsets[i] }
        var indices = [Int32](repeating: 0, count: offsets[n])
        var values = [V](repeating: 0, count: offsets[n])
        indices.withShared { indicesOut in
            values.withShared { valuesOut in
                Self.eachRow(userItems, itemUsers, blocks: blocks, threads: threads) { [offsets] i, columns, accumulator, sorted in
                    var at = offsets[i]
                    for j in sorted(columns) {
                        indicesOut.base[at] = j
                        valuesOut.base[at] = V(accumulator[Int(j)])
                        at += 1
                    }
                }
            }
        }
        return (offsets, indices, values)
    }

    /// Row ranges of about equal cumulative work (`cumulativeWork[i]` is the work of the rows before i).
    static func blocks(cumulativeWork work: [Int], count: Int) -> [Range<Int>] {
        let n = work.count - 1
        let total = Double(max(work[n], 1))
        var out: [Range<Int>] = []
        var start = 0
        for b in 1...max(count, 1) where start < n {
            var end = start + 1
            if b == count {
                end = n
            } else {
                let target = Int(total * Double(b) / Double(count))
                while end < n, work[end] < target { end += 1 }
            }
            out.append(start..<end)
            start = end
        }
        return out
    }

    /// Calls `row(i, columns, accumulator, sorted)` for every item i with its co-occurring columns (unordered),
    /// their sums in `accumulator`, and a function that puts the columns in order. Blocks run in parallel; `row` may
    /// only write what belongs to row i. Up to `threads` workers, each with its own accumulator, take the blocks in turn.
    static func eachRow(
        _ userItems: SparseMatrix, _ itemUsers: SparseMatrix, blocks: [Range<Int>], threads: Int,
        _ row: @Sendable (Int, [Int32], UnsafeMutablePointer<Double>, ([Int32]) -> [Int32]) -> Void
    ) {
        let n = userItems.columns
        let nextBlock = BlockCounter()
        userItems.offsets.withUnsafeBufferPointer { rowStart in
            userItems.indices.withUnsafeBufferPointer { columns in
                userItems.values.withUnsafeBufferPointer { weights in
                    let rowStart = UncheckedPointer(rowStart.baseAddress!), columns = UncheckedPointer(columns.baseAddress!)
                    let weights = UncheckedPointer(weights.baseAddress!)
                    DispatchQueueShim.concurrentPerform(iterations: max(1, min(threads, blocks.count))) { _ in
                        var accumulator = [Double](repeating: 0, count: n)
                        var touched = [Bool](repeating: false, count: n)
                        var list: [Int32] = []
                        accumulator.withUnsafeMutableBufferPointer { acc in
                            touched.withUnsafeMutableBufferPointer { seen in
                                while let b = nextBlock.take(below: blocks.count) {
                                    for i in blocks[b] {
                                        for p in itemUsers.offsets[i]..<itemUsers.offsets[i + 1] {
                                            let u = Int(itemUsers.indices[p]), vi = Double(itemUsers.values[p])
                                            for q in rowStart.pointer[u]..<rowStart.pointer[u + 1] {
                                                let j = Int(columns.pointer[q])
                                                acc[j] += vi * Double(weights.pointer[q])
                                                if !seen[j] {
                                                    seen[j] = true
                                                    list.append(Int32(j))
                                                }
                                            }
                                        }
                                        // Columns in order: a pass over the row when it is dense, a sort of the few touched when not.
                                        row(i, list, acc.baseAddress!) { list in
                                            list.count > n / 8 ? (0..<Int32(n)).filter { seen[Int($0)] } : list.sorted()
                                        }
                                        for j in list {
                                            acc[Int(j)] = 0
                                            seen[Int(j)] = false
                                        }
                                        list.removeAll(keepingCapacity: true)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    private init(items n: Int, offsets: [Int], indices: [Int32], counts: [Float], sums: [Double]) {
        items = n
        self.offsets = offsets
        self.indices = indices
        self.counts = counts
        self.sums = sums
        isNarrow = sums.isEmpty
        diagonal = [Double](repeating: 0, count: n)
        for i in 0..<n { diagonal[i] = position(i, Int32(i)).map { value($0) } ?? 0 }
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
            var s = value(p)
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
            let s = value(p) / (di * dj).squareRoot()
            guard s > 1e-9 else { continue }
            let f = Float(s)
            if f > top.threshold { top.offer(j, f) }
        }
        let pairs = zip(top.items, top.scores).sorted { $0.0 < $1.0 }
        return (pairs.map(\.0), pairs.map(\.1))
    }

    /// Subtracts one user's outer product `x xᵀ`.
    mutating func subtract(items: ArraySlice<Int32>, values weights: ArraySlice<Float>) {
        // Moved out and back, so that the table is changed in place rather than copied.
        if isNarrow {
            var values = counts
            counts = []
            Self.subtract(items, weights, offsets: offsets, indices: indices, from: &values, diagonal: &diagonal)
            counts = values
        } else {
            var values = sums
            sums = []
            Self.subtract(items, weights, offsets: offsets, indices: indices, from: &values, diagonal: &diagonal)
            sums = values
        }
    }

    private static func subtract<V: BinaryFloatingPoint>(
        _ items: ArraySlice<Int32>, _ weights: ArraySlice<Float>, offsets: [Int], indices: [Int32], from values: inout [V],
        diagonal: inout [Double]
    ) {
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
                        c[lo] -= V(Double(wi) * Double(wj))
                        // Rounding dust where a sum without the user gives zero would read as a (tiny) co-occurrence.
                        if abs(c[lo]) < 1e-9 { c[lo] = 0 }
                        if j == i { diagonal[Int(i)] = Double(c[lo]) }
                    }
                }
            }
        }
    }
}

/// Hands out block numbers to the workers of one parallel loop.
final class BlockCounter: Sendable {
    private let next = Mutex(0)

    func take(below count: Int) -> Int? {
        next.withLock { n in
            guard n < count else { return nil }
            defer { n += 1 }
            return n
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
    /// Kept for cosine models, to unlearn users by subtraction; nil in a model kept for scoring only.
    var cooccurrence: Cooccurrence?

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
