import Testing
@testable import Recommender

func scores(_ model: any ScoringModel, _ context: UserContext) -> [Float] {
    var out = [Float](repeating: 0, count: model.itemCount)
    out.withUnsafeMutableBufferPointer { model.score(context, into: $0) }
    return out
}

@Suite struct ContentTests {
    @Test func featureHashingIsStableBoundedAndSumsCollisions() {
        let a = FeatureHasher(width: 64), b = FeatureHasher(width: 64)
        for feature in ["brand:acme", "attr:color=red", "tag:summer", "ünïcode"] {
            #expect(a.bucket(feature) == b.bucket(feature))
            #expect((0..<64).contains(a.bucket(feature).index))
        }
        // With one bucket everything collides: the signed values add up.
        let one = FeatureHasher(width: 1)
        let cell = one.vector([("x", 1), ("y", 1), ("z", 1)])
        let expected = ["x", "y", "z"].map { one.bucket($0).sign }.reduce(0, +)
        #expect(cell.map(\.value).reduce(0, +) == expected)
        // A wide hasher keeps distinct features apart (these three do not collide in 2^16 buckets).
        #expect(FeatureHasher(width: 1 << 16).vector([("x", 1), ("y", 1), ("z", 1)]).count == 3)
    }

    @Test func catalogFieldsBecomeCategoricalAndTextFeatures() {
        let c = ItemContent(
            category: "Apparel/Shoes", brand: "Stride", attributes: ["color": "Red", "size": "42"], tags: ["Trail"], title: "Trail Runner 2")
        #expect(c.productType == "apparel")
        #expect(c.categorical == ["cat:apparel", "cat:apparel/shoes", "brand:stride", "attr:color=red", "attr:size=42"])
        #expect(c.text == ["trail", "runner", "tag:trail"])
    }

    /// Apparel with specifications is compared by exact features, books without attributes by their words.
    @Test func similarityIsChosenPerProductType() {
        let items = [
            ItemContent(category: "apparel/shoes", brand: "stride", attributes: ["color": "red", "style": "runner"], tags: [], title: "Alpha"),
            ItemContent(category: "apparel/shoes", brand: "stride", attributes: ["color": "red", "style": "runner"], tags: [], title: "Beta"),
            ItemContent(category: "apparel/shoes", brand: "other", attributes: ["color": "blue", "style": "boot"], tags: [], title: "Alpha"),
            ItemContent(category: "books/fiction", brand: nil, attributes: [:], tags: [], title: "dragons of the north"),
            ItemContent(category: "books/fiction", brand: nil, attributes: [:], tags: [], title: "the dragons return"),
            ItemContent(category: "books/fiction", brand: nil, attributes: [:], tags: [], title: "the quiet garden"),
        ]
        let model = ContentModel(items: items, width: 1 << 12)
        #expect(model.similarity["apparel"] == .categorical)
        #expect(model.similarity["books"] == .text)
        // Same brand and specifications beat a shared title word for apparel.
        #expect(model.similarity(0, 1) > model.similarity(0, 2))
        // For books the rare shared word ("dragons") beats the common one ("the").
        #expect(model.similarity(3, 4) > model.similarity(4, 5))
        #expect(model.similarity(0, 3) < 0.05)
        // An operator can override the choice.
        let overridden = ContentModel(items: items, width: 1 << 12, similarity: ["apparel": .text])
        #expect(overridden.similarity["apparel"] == .text)
        #expect(overridden.similarity(0, 2) > overridden.similarity(0, 1), "by words, Alpha matches Alpha")
    }

    /// The profile is a recency-weighted mean: what the user looked at last counts most.
    @Test func recentInteractionsWeighMore() {
        let items = [
            ItemContent(productType: "a", categorical: ["cat:a", "style:x"], text: []),
            ItemContent(productType: "a", categorical: ["cat:a", "style:x"], text: []),
            ItemContent(productType: "b", categorical: ["cat:b", "style:y"], text: []),
            ItemContent(productType: "b", categorical: ["cat:b", "style:y"], text: []),
        ]
        let model = ContentModel(items: items, width: 1 << 10, halfLife: 86_400)
        let now: Int64 = 10_000_000
        let recentB = scores(model, UserContext(user: nil, items: [0, 2], time: now, itemTimes: [now - 30 * 86_400, now - 3600]))
        #expect(recentB[3] > recentB[1])
        let recentA = scores(model, UserContext(user: nil, items: [0, 2], time: now, itemTimes: [now - 3600, now - 30 * 86_400]))
        #expect(recentA[1] > recentA[3])
        // Without times both count the same.
        let flat = scores(model, UserContext(user: nil, items: [0, 2]))
        #expect(abs(flat[1] - flat[3]) < 1e-5)
    }

    @Test func mostSimilarNamesTheClosestItemOfTheUser() {
        let items = [
            ItemContent(productType: "a", categorical: ["cat:a", "brand:p", "color:red"], text: []),
            ItemContent(productType: "a", categorical: ["cat:a", "brand:q", "color:blue"], text: []),
            ItemContent(productType: "a", categorical: ["cat:a", "brand:p", "color:red"], text: ["new"]),
        ]
        let model = ContentModel(items: items, width: 1 << 10)
        #expect(model.mostSimilar(to: 2, in: UserContext(user: nil, items: [1, 0]))?.item == 0)
        #expect(model.mostSimilar(to: 2, in: UserContext(user: nil, items: [])) == nil)
    }

    /// A segment smaller than the minimum is never used; the lookup falls back to a coarser one.
    @Test func segmentPopularityKeepsOnlySegmentsOfAtLeastKUsers() {
        // Users 0..<6: segment fine-A (region R1), like item 0. Users 6..<9: fine-B (region R1), like item 1.
        var interactions: [Interaction] = []
        for u in 0..<6 { interactions.append(Interaction(user: Int32(u), item: 0)) }
        for u in 6..<9 { interactions.append(Interaction(user: Int32(u), item: 1)); interactions.append(Interaction(user: Int32(u), item: 2)) }
        let matrix = SparseMatrix(users: 9, items: 3, interactions: interactions)
        let keys = (0..<9).map { $0 < 6 ? ["fine-A", "R1"] : ["fine-B", "R1"] }
        let segments = SegmentPopularity(matrix: matrix, userSegments: keys, minimumUsers: 5)
        #expect(segments.segmentCount == 2, "fine-A (6 users) and R1 (9 users); fine-B (3 users) is dropped")
        let a = try! #require(segments.lookup(["fine-A", "R1"]))
        #expect(a.level == 0)
        #expect(a.counts == [6, 0, 0])
        let b = try! #require(segments.lookup(["fine-B", "R1"]))
        #expect(b.level == 1, "fine-B has only 3 users")
        #expect(b.counts == [6, 3, 3])
        #expect(segments.lookup(["nowhere"]) == nil)
    }
}
