import FeatureStore
import Policy
import Recommender

extension ServingModel {
    /// Everything needed to serve and to forget a subject, without the training data kept for unlearning: one process
    /// trains, the others load it. A decoded model ranks, explains and forgets as this one does; its
    /// ``unlearning(_:)`` and ``retrained(without:searching:)`` answer nil. Byte-stable: the same model gives the same
    /// bytes.
    public func encoded() throws -> [UInt8] {
        var w = ModelWriter()
        w.string(version)
        w.strings(items)
        w.strings(titles)
        w.strings(categories)
        w.bools(available)
        try w.model(ranker)
        try w.model(neighbours)
        try w.model(content)
        w.bools(cold)
        segments.write(to: &w)
        w.floats(popularity)
        w.floats(trending)
        w.map(blendWeights) { $0.float($1) }
        w.int(users)
        w.strings(userTokens)
        options.write(to: &w)
        behaviourScaler.write(to: &w)
        w.strings(behaviourFeatureNames)
        sessionModel.write(to: &w)
        w.float(sessionWeight)
        w.map(imputedAgeBands) { $1.write(to: &$0) }
        w.optional(segmentModel) { $1.write(to: &$0) }
        w.count(strategyItems.count)
        for (strategy, mask) in strategyItems.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            w.string(strategy.rawValue)
            w.bools(mask)
        }
        // Keyed by id, as training builds it.
        w.count(catalogByID.count)
        for (_, item) in catalogByID.sorted(by: { $0.key < $1.key }) { item.write(to: &w) }
        w.strings(productTypes)
        w.optional(provenance) {
            $0.int($1.subjects)
            $0.string($1.digest)
            $0.uint64s($1.memberWords)
        }
        return w.bytes
    }

    /// Throws ``ModelCodingError`` for anything that is not a model this code encoded (truncated, wrong magic or
    /// format version, lengths past the end, inconsistent sizes). Never traps on hostile bytes.
    public init(encoded bytes: [UInt8]) throws {
        var r = try ModelReader(bytes)
        let version = try r.string("version")
        let items = try r.strings("items")
        var itemIndex: [String: Int32] = [:]
        itemIndex.reserveCapacity(items.count)
        for (i, id) in items.enumerated() {
            try ModelCheck.require(itemIndex.updateValue(Int32(truncatingIfNeeded: i), forKey: id) == nil, "item repeated")
        }
        try ModelCheck.require(items.count <= Int(Int32.max), "too many items")
        let titles = try r.strings("titles"), categories = try r.strings("categories"), available = try r.bools("available")
        let n = items.count
        let ranker = try r.model(items: n)
        guard let neighbours = try r.model(items: n) as? ItemKNNModel else { throw ModelCodingError.inconsistent("neighbours not an item-kNN model") }
        guard let content = try r.model(items: n) as? ContentModel else { throw ModelCodingError.inconsistent("content not a content model") }
        let cold = try r.bools("cold")
        let segments = try SegmentPopularity(reading: &r, items: n)
        let popularity = try r.floats("popularity"), trending = try r.floats("trending")
        var blendWeights: [String: Float] = [:]
        for _ in 0..<(try r.count("blend weights", elementSize: 12)) {
            let name = try r.string("blend weight name")
            try ModelCheck.require(blendWeights.updateValue(try r.float("blend weight"), forKey: name) == nil, "blend weight repeated")
        }
        let users = try r.size("users")
        let userTokens = try r.strings("user tokens")
        let options = try ServingOptions(reading: &r)
        let behaviourScaler = try FeatureScaler(reading: &r)
        let behaviourFeatureNames = try r.strings("behaviour feature names")
        let sessionModel = try SessionKNN(reading: &r, items: n)
        let sessionWeight = try r.float("session weight")
        var imputedAgeBands: [String: KNNImputer.Imputed] = [:]
        for _ in 0..<(try r.count("imputed age bands", elementSize: 20)) {
            let token = try r.string("imputed token")
            try ModelCheck.require(imputedAgeBands.updateValue(try KNNImputer.Imputed(reading: &r), forKey: token) == nil, "imputed token repeated")
        }
        let segmentModel = try r.optional("segment model") { r throws(ModelCodingError) in try SegmentModel(reading: &r) }
        var strategyItems: [SegmentStrategy: [Bool]] = [:]
        for _ in 0..<(try r.count("strategy items", elementSize: 16)) {
            let strategy = try SegmentStrategy(reading: &r)
            try ModelCheck.require(strategyItems.updateValue(try r.bools("strategy mask"), forKey: strategy) == nil, "strategy repeated")
        }
        var catalogByID: [String: CatalogItem] = [:]
        for _ in 0..<(try r.count("catalog", elementSize: 8)) {
            let item = try CatalogItem(reading: &r)
            try ModelCheck.require(catalogByID.updateValue(item, forKey: item.id) == nil, "catalog item repeated")
        }
        let productTypes = try r.strings("product types")
        let provenance = try r.optional("provenance") { r throws(ModelCodingError) -> ModelProvenance in
            let subjects = try r.size("provenance subjects"), digest = try r.string("provenance digest")
            guard let provenance = ModelProvenance(subjects: subjects, digest: digest, memberWords: try r.uint64s("provenance members")) else {
                throw .inconsistent("provenance members")
            }
            return provenance
        }
        try r.finish()

        // What serving indexes by item or by user row without further checks (the models checked their item counts).
        for (what, count) in [
            ("titles", titles.count), ("categories", categories.count), ("available", available.count), ("cold", cold.count),
            ("popularity", popularity.count), ("trending", trending.count),
        ] {
            try ModelCheck.require(count == n, "\(what): \(count) items for a catalog of \(n)")
        }
        try ModelCheck.require(strategyItems.values.allSatisfy { $0.count == n }, "strategy masks size")
        try ModelCheck.require(userTokens.count == users, "user tokens")
        try ModelCheck.require(behaviourFeatureNames.count == behaviourScaler.offsets.count, "behaviour features")
        try ModelCheck.indices(sessionModel.owners ?? [], below: users, "session owners")
        for case let als as ALSModel in (ranker as? HybridModel)?.components ?? [] {
            try ModelCheck.require(als.userFactors.count / als.factors == users, "ALS user rows")
        }
        self.init(
            version: version, items: items, itemIndex: itemIndex, titles: titles, categories: categories, available: available,
            ranker: ranker, neighbours: neighbours, content: content, cold: cold, segments: segments, popularity: popularity,
            trending: trending, blendWeights: blendWeights, users: users, userTokens: userTokens, options: options,
            behaviourScaler: behaviourScaler, behaviourFeatureNames: behaviourFeatureNames, sessionModel: sessionModel,
            sessionWeight: sessionWeight, imputedAgeBands: imputedAgeBands, segmentModel: segmentModel, strategyItems: strategyItems,
            catalogByID: catalogByID, productTypes: productTypes, provenance: provenance, training: nil)
    }
}

extension ServingOptions {
    func write(to w: inout ModelWriter) {
        w.strings(excludeInteractedKinds.map(\.rawValue).sorted())
        w.map(contentSimilarity) { $0.string($1.rawValue) }
        w.int(contentHashWidth)
        w.int(easeMaxItems)
        w.int(minimumSegmentSize)
        w.int(imputationNeighbours)
        w.int(imputationReferences)
        w.map(segmentStrategies) { $0.string($1.rawValue) }
        w.float(strategyBoost)
        w.bool(segmentsForCampaigns)
    }

    init(reading r: inout ModelReader) throws(ModelCodingError) {
        self.init()
        excludeInteractedKinds = []
        for raw in try r.strings("excluded kinds") {
            guard let kind = InteractionKind(rawValue: raw) else { throw .inconsistent("excluded kind") }
            excludeInteractedKinds.insert(kind)
        }
        contentSimilarity = [:]
        for _ in 0..<(try r.count("content similarities", elementSize: 16)) {
            let type = try r.string("content product type")
            guard let choice = ContentSimilarity(rawValue: try r.string("content similarity")) else { throw .inconsistent("content similarity") }
            try ModelCheck.require(contentSimilarity.updateValue(choice, forKey: type) == nil, "content product type repeated")
        }
        contentHashWidth = try r.int("content hash width")
        easeMaxItems = try r.int("EASE items")
        minimumSegmentSize = try r.int("minimum segment size")
        imputationNeighbours = try r.int("imputation neighbours")
        imputationReferences = try r.int("imputation references")
        segmentStrategies = [:]
        for _ in 0..<(try r.count("segment strategies", elementSize: 16)) {
            let segment = try r.string("strategy segment")
            try ModelCheck.require(
                segmentStrategies.updateValue(try SegmentStrategy(reading: &r), forKey: segment) == nil, "strategy segment repeated")
        }
        strategyBoost = try r.float("strategy boost")
        segmentsForCampaigns = try r.bool("segments for campaigns")
    }
}

extension SegmentStrategy {
    init(reading r: inout ModelReader) throws(ModelCodingError) {
        guard let strategy = SegmentStrategy(rawValue: try r.string("strategy")) else { throw .inconsistent("strategy") }
        self = strategy
    }
}

extension SegmentModel {
    func write(to w: inout ModelWriter) {
        w.string(view.rawValue)
        w.string(method.rawValue)
        w.float(silhouette)
        w.count(segments.count)
        for s in segments {
            w.int(s.id)
            w.string(s.name)
            w.int(s.size)
            w.strings(s.traits)
        }
        w.strings(featureNames)
        scaler.write(to: &w)
        w.count(centroids.count)
        for c in centroids { w.floats(c) }
        w.map(assignments) { $0.int($1) }
    }

    init(reading r: inout ModelReader) throws(ModelCodingError) {
        guard let view = View(rawValue: try r.string("segment view")), let method = Method(rawValue: try r.string("segment method")) else {
            throw .inconsistent("segment view or method")
        }
        let silhouette = try r.float("silhouette")
        var segments: [Segment] = []
        for _ in 0..<(try r.count("segments", elementSize: 32)) {
            segments.append(
                Segment(
                    id: try r.int("segment id"), name: try r.string("segment name"), size: try r.int("segment size"), traits: try r.strings("traits"))
            )
        }
        let featureNames = try r.strings("segment features")
        let scaler = try FeatureScaler(reading: &r)
        var centroids: [[Float]] = []
        for _ in 0..<(try r.count("centroids", elementSize: 8)) { centroids.append(try r.floats("centroid")) }
        var assignments: [String: Int] = [:]
        for _ in 0..<(try r.count("assignments", elementSize: 16)) {
            let token = try r.string("assigned token")
            let segment = try r.int("assigned segment")
            try ModelCheck.require(segment >= 0 && segment < segments.count, "assigned segment out of range")
            try ModelCheck.require(assignments.updateValue(segment, forKey: token) == nil, "assigned token repeated")
        }
        // A subject's segment is the nearest centroid's, over rows as wide as the scaler.
        try ModelCheck.require(!centroids.isEmpty && centroids.count == segments.count, "centroids and segments")
        try ModelCheck.require(centroids.allSatisfy { $0.count == scaler.offsets.count }, "centroid width")
        try ModelCheck.require(featureNames.count == scaler.offsets.count, "segment features")
        self.init(
            view: view, method: method, silhouette: silhouette, segments: segments, featureNames: featureNames, scaler: scaler,
            centroids: centroids, assignments: assignments)
    }
}

extension CatalogItem {
    func write(to w: inout ModelWriter) {
        w.string(id)
        w.string(title)
        w.string(category)
        w.optional(brand) { $0.string($1) }
        w.optional(price) { $0.double($1) }
        w.bool(available)
        w.map(attributes) { $0.string($1) }
        w.strings(tags)
    }

    init(reading r: inout ModelReader) throws(ModelCodingError) {
        let id = try r.string("catalog id"), title = try r.string("catalog title"), category = try r.string("catalog category")
        let brand = try r.optional("catalog brand") { r throws(ModelCodingError) in try r.string("catalog brand") }
        let price = try r.optional("catalog price") { r throws(ModelCodingError) in try r.double("catalog price") }
        let available = try r.bool("catalog available")
        var attributes: [String: String] = [:]
        for _ in 0..<(try r.count("catalog attributes", elementSize: 16)) {
            let key = try r.string("attribute key")
            try ModelCheck.require(attributes.updateValue(try r.string("attribute value"), forKey: key) == nil, "attribute repeated")
        }
        self.init(
            id: id, title: title, category: category, brand: brand, price: price, available: available, attributes: attributes,
            tags: try r.strings("catalog tags"))
    }
}
