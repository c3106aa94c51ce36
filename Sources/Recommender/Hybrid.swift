/// A weighted blend of several models. Each component's scores are standardised per user
/// (z-scores over the catalog) before weighting, so weights compare across models with different scales.
public struct HybridModel: ScoringModel {
    public let name = "hybrid"
    public let components: [any ScoringModel]
    public let weights: [Float]
    /// Histories are weighted by recency at this scale (``UserContext/weightedByRecency(scale:)``) before every
    /// component scores them; nil: not weighted. Chosen on validation with the blend.
    public let recency: Float?
    public var itemCount: Int { components[0].itemCount }

    public init(components: [any ScoringModel], weights: [Float], recency: Float? = nil) {
        precondition(components.count == weights.count && !components.isEmpty)
        precondition(components.allSatisfy { $0.itemCount == components[0].itemCount })
        precondition(recency.map { $0 > 0 } ?? true)
        self.components = components
        self.weights = weights
        self.recency = recency
    }

    /// The same blend and recency over other components (unlearned, precomputed).
    public func replacing(components: [any ScoringModel]) -> HybridModel {
        HybridModel(components: components, weights: weights, recency: recency)
    }

    public func score(_ raw: UserContext, into out: UnsafeMutableBufferPointer<Float>) {
        let context = recency.map { raw.weightedByRecency(scale: $0) } ?? raw
        for i in 0..<out.count { out[i] = 0 }
        var buffer = [Float](repeating: 0, count: itemCount)
        buffer.withUnsafeMutableBufferPointer { b in
            for (model, weight) in zip(components, weights) where weight != 0 {
                model.score(context, into: b)
                HybridModel.standardise(b)
                Vec.axpy(weight, b.baseAddress!, out.baseAddress!, itemCount)
            }
        }
    }

    /// The same blend with time-dependent components fixed for serving around `time`.
    public func precomputing(at time: Int64) -> HybridModel {
        replacing(components: components.map { ($0 as? TrendingModel)?.precomputing(at: time) ?? $0 })
    }

    /// In place: (x − mean) / std; all zeros when the row is constant.
    public static func standardise(_ b: UnsafeMutableBufferPointer<Float>) {
        let n = Float(b.count)
        var sum: Float = 0, squares: Float = 0
        for v in b { sum += v; squares += v * v }
        let mean = sum / n
        let variance = max(squares / n - mean * mean, 0)
        let scale: Float = variance > 1e-12 ? 1 / variance.squareRoot() : 0
        for i in 0..<b.count { b[i] = (b[i] - mean) * scale }
    }
}
