/// SIMD kernels over contiguous `Float` storage. Swift does not reassociate floating-point sums, so
/// reductions are written with explicit 8-wide accumulators to vectorize.
@usableFromInline
enum Vec {
    @inlinable @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
        var i = 0
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        while i + 16 <= n {
            acc0 += ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) * rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            acc1 +=
                ra.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self)
                * rb.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self)
            i += 16
        }
        var sum = (acc0 + acc1).sum()
        while i < n {
            sum += a[i] * b[i]
            i += 1
        }
        return sum
    }

    /// y += alpha * x
    @inlinable @inline(__always)
    static func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y)
        let va = SIMD8<Float>(repeating: alpha)
        while i + 8 <= n {
            let v =
                ry.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) + va * rx.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            ry.storeBytes(of: v, toByteOffset: i * 4, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n {
            y[i] += alpha * x[i]
            i += 1
        }
    }

    /// y = alpha * y
    @inlinable @inline(__always)
    static func scale(_ alpha: Float, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { y[i] *= alpha }
    }
}

/// Runs `body(chunk)` for `chunks` contiguous chunks of `0..<count` on up to `threads` threads.
/// The split depends only on `count` and `threads`, so results are deterministic for a thread count.
func parallelChunks(count: Int, threads: Int, _ body: @Sendable (Range<Int>) -> Void) {
    let threads = max(1, min(threads, count))
    if threads == 1 {
        body(0..<count)
        return
    }
    let step = (count + threads - 1) / threads
    DispatchQueueShim.concurrentPerform(iterations: threads) { t in
        let lo = t * step
        let hi = min(count, lo + step)
        if lo < hi { body(lo..<hi) }
    }
}
