/// EASE (Steck 2019): a linear item-item model with a closed form,
/// `P = (XᵀX + λI)⁻¹`, `B = I − P · diag(1/diag(P))` with a zero diagonal.
public struct EASE: Sendable {
    public var regularization: Float
    public var threads: Int

    public init(regularization: Float = 250, threads: Int = 1) {
        self.regularization = regularization
        self.threads = threads
    }

    public func fit(_ userItems: SparseMatrix) -> EASEModel {
        let n = userItems.columns
        var gram = [Double](repeating: 0, count: n * n)
        // XᵀX accumulated user by user.
        gram.withUnsafeMutableBufferPointer { g in
            for u in 0..<userItems.rows {
                let lo = userItems.offsets[u], hi = userItems.offsets[u + 1]
                for p in lo..<hi {
                    let i = Int(userItems.indices[p]), vi = Double(userItems.values[p])
                    for q in lo..<hi { g[i * n + Int(userItems.indices[q])] += vi * Double(userItems.values[q]) }
                }
            }
        }
        for i in 0..<n { gram[i * n + i] += Double(regularization) }
        let inverse = DenseSolver.invertSymmetricPositiveDefinite(gram, n: n, threads: threads)
        return EASEModel(inverse: inverse, itemCount: n)
    }
}

/// The dense item-item weight matrix of EASE (row i: how item i's presence raises every other item).
public struct EASEModel: ScoringModel {
    public let name = "ease"
    public let itemCount: Int
    public let weights: [Float]
    /// `P = (XᵀX + λI)⁻¹`, kept so that removing a user is a rank-one update of P rather than a new inversion.
    let inverse: [Double]

    init(inverse: [Double], itemCount n: Int) {
        var weights = [Float](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0..<n where i != j {
                weights[i * n + j] = Float(-inverse[i * n + j] / inverse[j * n + j])
            }
        }
        self.itemCount = n
        self.weights = weights
        self.inverse = inverse
    }

    public func score(_ context: UserContext, into out: UnsafeMutableBufferPointer<Float>) {
        for i in 0..<out.count { out[i] = 0 }
        weights.withUnsafeBufferPointer { w in
            for (item, weight) in zip(context.items, context.weights) where Int(item) < itemCount {
                Vec.axpy(weight, w.baseAddress! + Int(item) * itemCount, out.baseAddress!, itemCount)
            }
        }
    }

    /// The history item that contributes most to `item`'s score.
    public func strongestReason(for item: Int32, in context: UserContext) -> Int32? {
        var best: (Int32, Float)?
        for (h, w) in zip(context.items, context.weights) where Int(h) < itemCount {
            let s = weights[Int(h) * itemCount + Int(item)] * w
            if s > (best?.1 ?? 0) { best = (h, s) }
        }
        return best?.0
    }
}

/// Dense linear algebra the models need, written for contiguous row-major storage.
public enum DenseSolver {
    /// Inverts a symmetric positive-definite matrix by Gauss–Jordan elimination without pivoting
    /// (stable for SPD matrices). Each elimination step updates rows in parallel with contiguous axpys.
    public static func invertSymmetricPositiveDefinite(_ matrix: [Double], n: Int, threads: Int = 1) -> [Double] {
        precondition(matrix.count == n * n)
        var a = matrix
        a.withShared { shared in
            let base = shared.base
            var pivotRow = [Double](repeating: 0, count: n)
            for k in 0..<n {
                let pivot = base[k * n + k]
                precondition(pivot > 0, "matrix is not positive definite")
                let inv = 1 / pivot
                // Row k becomes the scaled pivot row; column k of it holds 1/pivot.
                for j in 0..<n { base[k * n + j] *= inv }
                base[k * n + k] = inv
                for j in 0..<n { pivotRow[j] = base[k * n + j] }
                pivotRow.withUnsafeBufferPointer { pr in
                    let prp = UncheckedPointer(pr.baseAddress!)
                    parallelChunks(count: n, threads: n > 256 ? threads : 1) { rows in
                        for i in rows where i != k {
                            let row = shared.base + i * n
                            let factor = row[k]
                            if factor == 0 { continue }
                            row[k] = 0
                            axpyDouble(-factor, prp.pointer, row, n)
                        }
                    }
                }
            }
        }
        return a
    }

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
