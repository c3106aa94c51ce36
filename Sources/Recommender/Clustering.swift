/// Clustering for customer segments: k-means with k-means++ seeding, Ward's agglomerative clustering, and the
/// silhouette to choose k. Points are rows of scaled features.
public enum Clustering {
    public struct Result: Sendable, Equatable {
        /// Segment of each point, 0..<k.
        public var assignments: [Int]
        /// Mean of each segment's points.
        public var centroids: [[Float]]
        public var k: Int { centroids.count }

        public init(assignments: [Int], centroids: [[Float]]) {
            self.assignments = assignments
            self.centroids = centroids
        }
    }

    static func distance(_ a: [Float], _ b: [Float]) -> Float {
        var sum: Float = 0
        for i in 0..<a.count { sum += (a[i] - b[i]) * (a[i] - b[i]) }
        return sum
    }

    public static func nearest(_ point: [Float], among centroids: [[Float]]) -> Int {
        var best = 0, bestDistance = Float.infinity
        for (c, centroid) in centroids.enumerated() {
            let d = distance(point, centroid)
            if d < bestDistance { best = c; bestDistance = d }
        }
        return best
    }

    static func centroids(_ points: [[Float]], _ assignments: [Int], k: Int) -> [[Float]] {
        let width = points.first?.count ?? 0
        var sums = [[Float]](repeating: [Float](repeating: 0, count: width), count: k)
        var counts = [Int](repeating: 0, count: k)
        for (p, c) in zip(points, assignments) {
            counts[c] += 1
            for i in 0..<width { sums[c][i] += p[i] }
        }
        return (0..<k).map { c in sums[c].map { $0 / Float(max(counts[c], 1)) } }
    }

    /// Lloyd's k-means from a k-means++ start (Arthur & Vassilvitskii 2007). Deterministic for a seed.
    public static func kMeans(_ points: [[Float]], k: Int, seed: UInt64 = 42, iterations: Int = 100) -> Result {
        precondition(k >= 1 && points.count >= k, "k-means needs at least k points")
        var rng = SeededGenerator(seed: seed)
        var centers = [points[Int(rng.next() % UInt64(points.count))]]
        var nearestSquared = points.map { distance($0, centers[0]) }
        while centers.count < k {
            let total = nearestSquared.reduce(0, +)
            var pick = 0
            if total > 0 {
                var u = rng.nextFloat() * total
                for (i, d) in nearestSquared.enumerated() {
                    u -= d
                    if u <= 0 { pick = i; break }
                    pick = i
                }
            } else {
                pick = Int(rng.next() % UInt64(points.count))
            }
            centers.append(points[pick])
            for i in points.indices { nearestSquared[i] = min(nearestSquared[i], distance(points[i], points[pick])) }
        }
        var assignments = points.map { nearest($0, among: centers) }
        for _ in 0..<iterations {
            centers = centroids(points, assignments, k: k)
            let next = points.map { nearest($0, among: centers) }
            if next == assignments { break }
            assignments = next
        }
        return Result(assignments: assignments, centroids: centroids(points, assignments, k: k))
    }

    /// Ward's minimum-variance agglomerative clustering cut at `k` clusters, by the nearest-neighbour chain
    /// algorithm over Lance–Williams updates: O(n²) time and memory, so callers sample large sets.
    public static func ward(_ points: [[Float]], k: Int) -> Result {
        let n = points.count
        precondition(k >= 1 && n >= k)
        // Squared Euclidean distances; Ward's update works on them directly.
        var d = [Float](repeating: 0, count: n * n)
        for i in 0..<n { for j in (i + 1)..<max(i + 1, n) { let v = distance(points[i], points[j]); d[i * n + j] = v; d[j * n + i] = v } }
        var size = [Int](repeating: 1, count: n)
        var active = [Bool](repeating: true, count: n)
        var members: [[Int]] = (0..<n).map { [$0] }
        var clusters = n
        var chain: [Int] = []
        while clusters > k {
            if chain.isEmpty { chain.append(active.firstIndex(of: true)!) }
            let a = chain.last!
            var b = -1
            var best = Float.infinity
            // Prefer the previous chain element on ties, so the chain terminates.
            if chain.count >= 2 { b = chain[chain.count - 2]; best = d[a * n + b] }
            for j in 0..<n where active[j] && j != a && d[a * n + j] < best {
                best = d[a * n + j]
                b = j
            }
            if chain.count >= 2 && b == chain[chain.count - 2] {
                // Reciprocal nearest neighbours: merge b into a.
                chain.removeLast(2)
                for j in 0..<n where active[j] && j != a && j != b {
                    let (na, nb, nj) = (Float(size[a]), Float(size[b]), Float(size[j]))
                    let v = ((na + nj) * d[a * n + j] + (nb + nj) * d[b * n + j] - nj * d[a * n + b]) / (na + nb + nj)
                    d[a * n + j] = v
                    d[j * n + a] = v
                }
                size[a] += size[b]
                members[a] += members[b]
                members[b] = []
                active[b] = false
                clusters -= 1
            } else {
                chain.append(b)
            }
        }
        var assignments = [Int](repeating: 0, count: n)
        // Number clusters by their smallest member, for stable output.
        let roots = (0..<n).filter { active[$0] }.sorted { members[$0].min()! < members[$1].min()! }
        for (c, root) in roots.enumerated() { for m in members[root] { assignments[m] = c } }
        return Result(assignments: assignments, centroids: centroids(points, assignments, k: roots.count))
    }

    /// Mean silhouette coefficient (Rousseeuw 1987) in [-1, 1]; higher means tighter, better-separated clusters.
    public static func silhouette(_ points: [[Float]], _ assignments: [Int]) -> Float {
        let k = (assignments.max() ?? 0) + 1
        guard k >= 2 else { return 0 }
        var total: Float = 0
        for i in points.indices {
            var sums = [Float](repeating: 0, count: k), counts = [Int](repeating: 0, count: k)
            for j in points.indices where j != i {
                sums[assignments[j]] += distance(points[i], points[j]).squareRoot()
                counts[assignments[j]] += 1
            }
            let own = assignments[i]
            guard counts[own] > 0 else { continue }
            let a = sums[own] / Float(counts[own])
            let b = (0..<k).filter { $0 != own && counts[$0] > 0 }.map { sums[$0] / Float(counts[$0]) }.min() ?? 0
            total += (b - a) / max(a, b, 1e-12)
        }
        return total / Float(points.count)
    }

    /// k-means for each k in `range`, keeping the k with the best silhouette (measured on at most `sample` points).
    public static func kMeansChoosingK(
        _ points: [[Float]], range: ClosedRange<Int>, seed: UInt64 = 42, sample: Int = 1500
    )
        -> (result: Result, silhouettes: [Int: Float])
    {
        var best: (Result, Float)?
        var scores: [Int: Float] = [:]
        let step = max(points.count / sample, 1)
        let probe = Array(stride(from: 0, to: points.count, by: step))
        for k in range where k <= points.count {
            let result = kMeans(points, k: k, seed: seed)
            let s = silhouette(probe.map { points[$0] }, probe.map { result.assignments[$0] })
            scores[k] = s
            if best == nil || s > best!.1 { best = (result, s) }
        }
        return (best!.0, scores)
    }
}
