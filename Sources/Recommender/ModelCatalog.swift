/// The named models `veil evaluate` and the gateway can train, with their default hyperparameters.
public enum ModelCatalog {
    public static let names = ["popularity", "trending", "als", "bpr", "item-knn", "item-knn-bm25", "ease", "content", "hybrid"]

    public struct Options: Sendable {
        public var threads = 1
        public var seed: UInt64 = 42
        public var als = ALS.Configuration()
        public var easeRegularization: Float = 250
        /// How many of the most interacted-with items EASE models (``EASE/maxItems``).
        public var easeMaxItems = EASE.defaultMaxItems
        /// Where fits report their phases and steps.
        public var progress = ProgressReporter.silent
        public var trendingHalfLife: Double = 7 * 86_400
        /// Buckets of the content model's feature hashing.
        public var contentHashWidth = 1 << 14
        /// Content similarity per product type, overriding the inferred choice.
        public var contentSimilarity: [String: ContentSimilarity] = [:]
        public init() {}
    }

    public struct UnknownModel: Error, CustomStringConvertible {
        public let name: String
        public var description: String { "unknown model '\(name)'; choose one of: \(ModelCatalog.names.joined(separator: ", ")), all" }
    }

    /// Trains model `name` on `split`'s training data.
    public static func fit(_ name: String, on split: EvaluationSplit, options: Options) throws -> any ScoringModel {
        let matrix = split.trainMatrix
        if name != "hybrid" { options.progress.phase(name, "fit") }
        switch name {
        case "popularity":
            return PopularityModel(matrix)
        case "trending":
            return TrendingModel(itemCount: matrix.columns, interactions: split.train, halfLife: options.trendingHalfLife)
        case "als":
            var cfg = options.als
            cfg.threads = options.threads
            cfg.seed = options.seed
            return ALS(cfg).fit(matrix, progress: options.progress)
        case "bpr":
            var cfg = BPR.Configuration()
            cfg.seed = options.seed
            return BPR(cfg).fit(matrix)
        case "item-knn":
            return ItemKNN(similarity: .cosine, threads: options.threads).fit(matrix)
        case "item-knn-bm25":
            return ItemKNN(similarity: .bm25, threads: options.threads).fit(matrix)
        case "ease":
            return EASE(regularization: options.easeRegularization, threads: options.threads, maxItems: options.easeMaxItems)
                .fit(matrix, progress: options.progress)
        case "content":
            return ContentModel(items: split.itemContent, width: options.contentHashWidth, similarity: options.contentSimilarity)
        case "hybrid":
            return HybridTrainer(options: options).fit(split)
        default:
            throw UnknownModel(name: name)
        }
    }
}
