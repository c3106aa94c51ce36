import COpenBLAS
import Synchronization

/// EASE (Steck 2019): a linear item-item model with a closed form,
/// `P = (XᵀX + λI)⁻¹`, `B = I − P · diag(1/diag(P))` with a zero diagonal.
///
/// Its fit costs the cube of the items it models and its memory twelve bytes per pair of them (the inverse in Double,
/// kept for unlearning, and the weights in Float; about twenty while fitting), so it models only the `maxItems` most
/// interacted-with items; the others score below every modeled one, and the hybrid's validation decides how much EASE
/// counts beside the models that cover them.
public struct EASE: Sendable {
    public var regularization: Float
    public var threads: Int
    public var maxItems: Int

    /// 10,000 items: seconds of LAPACK on two cores, 1.2 GB kept and about as much again while fitting.
    public static let defaultMaxItems = 10_000

    public init(regularization: Float = 250, threads: Int = 1, maxItems: Int = EASE.defaultMaxItems) {
        precondition(regularization > 0 && maxItems > 0)
        self.regularization = regularization
        self.threads = threads
        self.maxItems = maxItems
    }

    public func fit(_ userItems: SparseMatrix, progress: ProgressReporter = .silent) -> EASEModel {
        let modeled = EASE.mostInteracted(userItems, limit: maxItems)
        progress.phase("ease", "gram", total: modeled.count)
        let gram = EASE.gram(userItems, items: modeled, regularization: Double(regularization), threads: threads)
        progress.phase("ease", "solve", total: modeled.count)
        let inverse = DenseSolver.invertSymmetricPositiveDefinite(gram, n: modeled.count, threads: threads)
        progress.phase("ease", "weights", total: modeled.count)
        return EASEModel(inverse: inverse, items: modeled, itemCount: userItems.columns, threads: threads)
    }

    /// The `limit` items with the most users (ties to the lower index), in index order.
    static func mostInteracted(_ matrix: SparseMatrix, limit: Int) -> [Int32] {
        let counts = matrix.columnCounts()
        guard counts.count > limit else { return (0..<Int32(counts.count)).map { $0 } }
        let order = counts.indices.sorted { counts[$0] != counts[$1] ? counts[$0] > counts[$1] : $0 < $1 }
        return order.prefix(limit).sorted().map { Int32($0) }
    }

    /// `XᵀX + λI` over the modeled items, in Double; each thread owns whole rows, so no two write the same element.
    static func gram(_ userItems: SparseMatrix, items: [Int32], regularization: Double, threads: Int) -> [Double] {
        let m = items.count
        var position = [Int32](repeating: -1, count: userItems.columns)
        for (p, i) in items.enumerated() { position[Int(i)] = Int32(p) }
        // The user rows restricted to the modeled items, with local indices (increasing, as `items` is sorted).
        var offsets = [Int](repeating: 0, count: userItems.rows + 1)
        var indices: [Int32] = [], values: [Float] = []
        indices.reserveCapacity(userItems.nonZeroCount)
        values.reserveCapacity(userItems.nonZeroCount)
        for u in 0..<userItems.rows {
            for k in userItems.offsets[u]..<userItems.offsets[u + 1] {
                let p = position[Int(userItems.indices[k])]
                if p >= 0 {
                    indices.append(p)
                    values.append(userItems.values[k])
                }
            }
            offsets[u + 1] = indices.count
        }
        let restricted = SparseMatrix(rows: userItems.rows, columns: m, offsets: offsets, indices: indices, values: values)
        let itemUsers = restricted.transposed()
        var gram = [Double](repeating: 0, count: m * m)
        gram.withShared { g in
            parallelChunks(count: m, threads: m > 256 ? threads : 1) { rows in
                for a in rows {
                    let row = g.base + a * m
                    for k in itemUsers.offsets[a]..<itemUsers.offsets[a + 1] {
                        let u = Int(itemUsers.indices[k]), xa = Double(itemUsers.values[k])
                        for q in restricted.offsets[u]..<restricted.offsets[u + 1] {
                            row[Int(restricted.indices[q])] += xa * Double(restricted.values[q])
                        }
                    }
                    row[a] += regularization
                }
            }
        }
        return gram
    }
}

/// The item-item weight matrix of EASE over its modeled items (row i: how item i's presence raises every other item).
public struct EASEModel: ScoringModel {
    public let name = "ease"
    public let itemCount: Int
    /// The catalog indices of the modeled items, increasing; all of them when the catalog fits.
    public let items: [Int32]
    /// Catalog index → row of `weights`, or −1 for an item EASE does not model.
    let position: [Int32]
    public let weights: [Float]
    /// `P = (XᵀX + λI)⁻¹`, kept so that removing a user is a rank-one update of P rather than a new inversion;
    /// empty in a model kept for scoring only (``Unlearnable/scoringOnly``).
    var inverse: [Double]

    init(inverse: [Double], items: [Int32], itemCount: Int, threads: Int = 1) {
        let m = items.count
        var weights = [Float](repeating: 0, count: m * m)
        weights.withShared { w in
            inverse.withUnsafeBufferPointer { p in
                let pp = UncheckedPointer(p.baseAddress!)
                parallelChunks(count: m, threads: m > 256 ? threads : 1) { rows in
                    for i in rows {
                        for j in 0..<m where i != j {
                            w.base[i * m + j] = Float(-pp.pointer[i * m + j] / pp.pointer[j * m + j])
                        }
                    }
                }
            }
        }
        self.itemCount = itemCount
        self.items = items
        self.position = Self.positions(of: items, itemCount: itemCount)
        self.weights = weights
        self.inverse = inverse
    }

    /// Per catalog item, its row among the modeled `items`, or -1.
    static func positions(of items: [Int32], itemCount: Int) -> [Int32] {
        var position = [Int32](repeating: -1, count: itemCount)
        for (p, i) in items.enumerated() { position[Int(i)] = Int32(p) }
        return position
    }

    public func score(_ context: UserContext, into out: UnsafeMutableBufferPointer<Float>) {
        let m = items.count
        weights.withUnsafeBufferPointer { w in
            if m == itemCount {
                for i in 0..<out.count { out[i] = 0 }
                for (item, weight) in zip(context.items, context.weights) where Int(item) < itemCount {
                    Vec.axpy(weight, w.baseAddress! + Int(item) * m, out.baseAddress!, m)
                }
                return
            }
            var local = [Float](repeating: 0, count: m)
            local.withUnsafeMutableBufferPointer { l in
                for (item, weight) in zip(context.items, context.weights) where Int(item) < itemCount && position[Int(item)] >= 0 {
                    Vec.axpy(weight, w.baseAddress! + Int(position[Int(item)]) * m, l.baseAddress!, m)
                }
                // An item EASE does not model ranks below every one it does (a zero would rank it above the items
                // it scores negatively).
                var lowest: Float = 0
                for p in 0..<m { lowest = min(lowest, l[p]) }
                for i in 0..<out.count { out[i] = lowest }
                for (p, item) in items.enumerated() { out[Int(item)] = l[p] }
            }
        }
    }

    /// The history item that contributes most to `item`'s score.
    public func strongestReason(for item: Int32, in context: UserContext) -> Int32? {
        guard Int(item) < itemCount, position[Int(item)] >= 0 else { return nil }
        let m = items.count, target = Int(position[Int(item)])
        var best: (Int32, Float)?
        for (h, w) in zip(context.items, context.weights) where Int(h) < itemCount && position[Int(h)] >= 0 {
            let s = weights[Int(position[Int(h)]) * m + target] * w
            if s > (best?.1 ?? 0) { best = (h, s) }
        }
        return best?.0
    }
}

/// Dense linear algebra the models need, on contiguous row-major storage.
public enum DenseSolver {
    /// Inverts a symmetric positive-definite matrix with LAPACK's Cholesky factorization and inverse (OpenBLAS's
    /// blocked, vectorized kernels on `threads` threads). Measured against the hand-written Gauss–Jordan in Double
    /// this replaces: docs/benchmarks.md.
    public static func invertSymmetricPositiveDefinite(_ matrix: [Double], n: Int, threads: Int = 1) -> [Double] {
        precondition(matrix.count == n * n)
        guard n > 0 else { return [] }
        var a = matrix
        var info: Int32 = 0
        var order = Int32(n), lead = Int32(n)
        var upper = CChar(UInt8(ascii: "U"))
        OpenBLASThreads.run(threads) {
            a.withUnsafeMutableBufferPointer { p in
                dpotrf_(&upper, &order, p.baseAddress, &lead, &info, 1)
                if info == 0 { dpotri_(&upper, &order, p.baseAddress, &lead, &info, 1) }
            }
        }
        precondition(info == 0, "matrix is not positive definite (LAPACK info \(info))")
        // LAPACK's column-major upper triangle is the row-major lower one: mirror it, in tiles for the cache.
        a.withUnsafeMutableBufferPointer { p in
            let tile = 64
            for r0 in stride(from: 0, to: n, by: tile) {
                for c0 in stride(from: r0, to: n, by: tile) {
                    for r in r0..<min(r0 + tile, n) {
                        for c in max(c0, r + 1)..<min(c0 + tile, n) { p[r * n + c] = p[c * n + r] }
                    }
                }
            }
        }
        return a
    }

    /// `Vector.axpy` for Double, kept apart on purpose: the Gram matrix is summed in Double (exact for the counts it
    /// holds), and the two differ in scalar and SIMD width (4 Doubles against 8 Floats per 256-bit register); one generic
    /// version would hide that width behind a type parameter in the hottest loop of the fit.
    @inline(__always)
    static func axpyDouble(_ alpha: Double, _ x: UnsafePointer<Double>, _ y: UnsafeMutablePointer<Double>, _ n: Int) {
        var i = 0
        let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y)
        let va = SIMD4<Double>(repeating: alpha)
        while i + 4 <= n {
            let v =
                ry.loadUnaligned(fromByteOffset: i * 8, as: SIMD4<Double>.self) + va * rx.loadUnaligned(fromByteOffset: i * 8, as: SIMD4<Double>.self)
            ry.storeBytes(of: v, toByteOffset: i * 8, as: SIMD4<Double>.self)
            i += 4
        }
        while i < n {
            y[i] += alpha * x[i]
            i += 1
        }
    }
}

/// OpenBLAS's thread count is one process-wide setting: solves take turns so that each runs with its own. In
/// ``Background`` work the solve runs on the caller's thread alone: OpenBLAS's own threads keep the priority they
/// were started with.
enum OpenBLASThreads {
    private static let turn = Mutex(())

    static func run(_ threads: Int, _ body: () -> Void) {
        turn.withLock { _ in
            openblas_set_num_threads(Background.isCurrent ? 1 : Int32(max(1, threads)))
            body()
        }
    }
}
