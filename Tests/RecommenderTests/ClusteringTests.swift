import Testing
@testable import Recommender

/// Three planted, well-separated blobs of 40 points in 3 dimensions.
func plantedBlobs(seed: UInt64 = 1) -> (points: [[Float]], truth: [Int]) {
    var rng = SeededGenerator(seed: seed)
    let centers: [[Float]] = [[0, 0, 0], [6, 6, 0], [0, 6, 6]]
    var points: [[Float]] = [], truth: [Int] = []
    for n in 0..<120 {
        let c = n % 3
        points.append(centers[c].map { $0 + (rng.nextFloat() - 0.5) * 2 })
        truth.append(c)
    }
    return (points, truth)
}

/// Same partition up to renumbering.
func samePartition(_ a: [Int], _ b: [Int]) -> Bool {
    var map: [Int: Int] = [:], reverse: [Int: Int] = [:]
    for (x, y) in zip(a, b) {
        if let m = map[x], m != y { return false }
        if let r = reverse[y], r != x { return false }
        map[x] = y
        reverse[y] = x
    }
    return true
}

@Suite struct ClusteringTests {
    @Test func kMeansRecoversPlantedClustersAndSilhouetteChoosesK() {
        let (points, truth) = plantedBlobs()
        let (result, silhouettes) = Clustering.kMeansChoosingK(points, range: 2...6)
        #expect(result.k == 3, "silhouettes \(silhouettes)")
        #expect(samePartition(result.assignments, truth))
        #expect(silhouettes[3]! > 0.7)
        #expect(Clustering.kMeans(points, k: 3, seed: 5) == Clustering.kMeans(points, k: 3, seed: 5), "deterministic for a seed")
    }

    @Test func wardRecoversPlantedClusters() {
        let (points, truth) = plantedBlobs(seed: 2)
        let result = Clustering.ward(points, k: 3)
        #expect(samePartition(result.assignments, truth))
        #expect(result.centroids.count == 3)
    }

    /// Hand-computed: two points per cluster on a line: {0, 1} and {10, 11}.
    @Test func silhouetteMatchesAHandComputedCase() {
        let points: [[Float]] = [[0], [1], [10], [11]]
        // Point 0: a = 1, b = (10 + 11) / 2 = 10.5 → s = 9.5 / 10.5. Point 1: a = 1, b = 9.5 → 8.5 / 9.5. Symmetric for the others.
        let expected: Float = (9.5 / 10.5 + 8.5 / 9.5) / 2
        #expect(abs(Clustering.silhouette(points, [0, 0, 1, 1]) - expected) < 1e-6)
        #expect(Clustering.silhouette(points, [0, 1, 0, 1]) < 0)
    }
}
