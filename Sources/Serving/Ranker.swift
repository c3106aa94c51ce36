import FeatureStore
import Foundation
import Policy
import Recommender

/// Turns a subject's history into a ranked, filtered, explained list with the serving model.
///
/// Three answers, by what the subject allowed and what is known:
/// - history (stored or in the session): the hybrid, with new items reached through content similarity;
/// - no history but a generalized profile: popularity in the subject's demographic segment;
/// - neither, or no consent: anonymous popularity and trends.
public struct Ranker {
    let model: ServingModel
    /// What ranks this subject's list when an A/B-test variant says (`popularity`, `content`); nil: the hybrid.
    public var rankerOverride: String? = nil
    /// The segment-strategy boost an A/B-test variant sets.
    public var strategyBoostOverride: Float? = nil
    /// Campaign boosts chosen for this subject (only with marketing consent).
    public var promotions: [Promotion] = []
    /// The subject's behaviour segment, when segments are in use.
    public var segment: SegmentModel.Segment?

    public init(model: ServingModel) { self.model = model }

    public struct Promotion: Sendable {
        public var campaign: String
        /// Per item: whether the campaign promotes it.
        public var items: [Bool]
        /// In standard deviations of the subject's scores.
        public var boost: Float

        public init(campaign: String, items: [Bool], boost: Float) {
            self.campaign = campaign
            self.items = items
            self.boost = boost
        }
    }

    public struct Result: Sendable {
        public var personalized: Bool
        public var items: [RecommendedItem]
    }

    /// - Parameter profile: the subject's generalized profile; pass it only with personalization consent.
    public func rank(
        history: [StoredInteraction], session: [String], profile: [String: String]?, query: RecommendationQuery,
        now: Date
    ) -> Result {
        let n = model.items.count
        var weights: [Int32: Float] = [:]
        var lastSeen: [Int32: Int64] = [:]
        var lastKind: [Int32: InteractionKind] = [:]
        var excluded = [Bool](repeating: false, count: n)
        var terms: [Int32] = []
        for h in history {
            if h.kind == .searchTerms {
                if Int(h.termWidth) == model.content.hasher.width { terms.append(contentsOf: h.terms) }
                continue
            }
            guard let i = model.itemIndex[h.item] else { continue }
            weights[i, default: 0] += h.weight
            lastSeen[i] = max(lastSeen[i] ?? 0, h.time)
            lastKind[i] = h.kind
            if model.options.excludeInteractedKinds.contains(h.kind) { excluded[Int(i)] = true }
        }
        let time = Int64(now.timeIntervalSince1970)
        // The current session: stored events of the last half hour, then the items the request names.
        var sessionItems = history.filter { !$0.item.isEmpty && time - $0.time <= ServingModel.sessionGap }.sorted { $0.time < $1.time }
            .compactMap { model.itemIndex[$0.item] }
        for item in session {
            guard let i = model.itemIndex[item] else { continue }
            sessionItems.append(i)
            weights[i, default: 0] += 1
            lastSeen[i] = time
            lastKind[i] = lastKind[i] ?? .pageView
            excluded[Int(i)] = true
        }
        for i in 0..<n where !model.available[i] { excluded[i] = true }
        for id in query.exclude { if let i = model.itemIndex[id] { excluded[Int(i)] = true } }
        if !query.categories.isEmpty {
            for i in 0..<n where !query.categories.contains(where: { model.categories[i] == $0 || model.categories[i].hasPrefix($0 + "/") }) {
                excluded[i] = true
            }
        }
        let items = weights.keys.sorted()
        var context = UserContext(user: nil, items: items, weights: items.map { weights[$0]! }, time: time, itemTimes: items.map { lastSeen[$0]! })
        context.hashedTerms = Array(terms.suffix(64))
        if !items.isEmpty, let ranker = rankerOverride, ranker != "hybrid" {
            if ranker == "content" {
                return Result(
                    personalized: true,
                    items: searchMatches(context, excluded: excluded, k: query.k, reason: ("similar-to", "Similar to what you looked at")))
            }
            return Result(personalized: false, items: nonPersonalized(excluded: excluded, k: query.k))
        }
        if !items.isEmpty {
            let strategy = segment.flatMap { model.options.segmentStrategies[$0.name] }
            return Result(
                personalized: true,
                items: personalized(
                    context, session: sessionItems, strategy: strategy, excluded: excluded,
                    lastKind: lastKind, k: query.k))
        }
        if !terms.isEmpty {
            return Result(personalized: true, items: searchMatches(context, excluded: excluded, k: query.k))
        }
        if let profile, let segment = model.segments.lookup(ServingModel.segmentKeys(profile)) {
            let (reason, explanation) = Self.segmentReason(level: segment.level, keys: ServingModel.segmentKeys(profile))
            let top = segment.counts.withUnsafeBufferPointer { TopK.select(scores: $0, k: query.k) { excluded[$0] } }
            return Result(
                personalized: true,
                items: zip(top.items, top.scores).map {
                    RecommendedItem(item: model.items[Int($0)], score: $1, reason: reason, explanation: explanation)
                })
        }
        return Result(personalized: false, items: nonPersonalized(excluded: excluded, k: query.k))
    }

    private func personalized(
        _ context: UserContext, session: [Int32], strategy: SegmentStrategy?, excluded: [Bool], lastKind: [Int32: InteractionKind],
        k: Int
    ) -> [RecommendedItem] {
        let n = model.items.count
        var scores = [Float](repeating: 0, count: n)
        var lifted = [Bool](repeating: false, count: n)
        scores.withUnsafeMutableBufferPointer { out in
            model.ranker.score(context, into: out)
            // Everything below works in standard deviations of the long-term scores.
            HybridModel.standardise(out)
            // Short-term intent, blended with the weight chosen on held-out sessions.
            if !session.isEmpty && model.sessionWeight > 0 {
                var short = [Float](repeating: 0, count: n)
                short.withUnsafeMutableBufferPointer { b in
                    model.sessionModel.score(session: session, into: b)
                    HybridModel.standardise(b)
                }
                let w = model.sessionWeight
                for i in 0..<n { out[i] = (1 - w) * out[i] + w * short[i] }
            }
            // The subject's segment strategy lifts the items it favours by the configured number of standard deviations.
            if let strategy, let favoured = model.strategyItems[strategy] {
                let boost = strategyBoostOverride ?? model.options.strategyBoost
                for i in 0..<n where favoured[i] { out[i] += boost }
            }
            for promotion in promotions where promotion.boost > 0 {
                for i in 0..<n where promotion.items[i] { out[i] += promotion.boost }
            }
            // Collaborative components know nothing of an item nobody has touched: such an item competes with
            // its content similarity to the subject's items, both as z-scores.
            guard model.cold.contains(true) else { return }
            var content = [Float](repeating: 0, count: n)
            content.withUnsafeMutableBufferPointer { c in
                model.content.score(context, into: c)
                HybridModel.standardise(c)
            }
            for i in 0..<n where model.cold[i] && content[i] > 0 && content[i] > out[i] {
                out[i] = content[i]
                lifted[i] = true
            }
        }
        let top = scores.withUnsafeBufferPointer { TopK.select(scores: $0, k: k) { excluded[$0] } }
        return zip(top.items, top.scores).map { item, score in
            if let promotion = promotions.first(where: { $0.boost > 0 && $0.items[Int(item)] }) {
                return RecommendedItem(
                    item: model.items[Int(item)], score: score, reason: "promoted", explanation: "On promotion: \(promotion.campaign)")
            }
            let (reason, explanation) = explain(item, context: context, lastKind: lastKind, preferContent: lifted[Int(item)])
            return RecommendedItem(item: model.items[Int(item)], score: score, reason: reason, explanation: explanation)
        }
    }

    /// A subject who only searched so far: items whose text matches the (hashed) words, by content alone.
    private func searchMatches(
        _ context: UserContext, excluded: [Bool], k: Int,
        reason: (String, String) = ("matches-your-search", "Matches what you searched for")
    ) -> [RecommendedItem] {
        var scores = [Float](repeating: 0, count: model.items.count)
        scores.withUnsafeMutableBufferPointer { model.content.score(context, into: $0) }
        let top = scores.withUnsafeBufferPointer { TopK.select(scores: $0, k: k) { excluded[$0] } }
        var out: [RecommendedItem] = []
        var taken = excluded
        for (item, score) in zip(top.items, top.scores) where score > 0 {
            out.append(RecommendedItem(item: model.items[Int(item)], score: score, reason: reason.0, explanation: reason.1))
            taken[Int(item)] = true
        }
        // Too few matches: the rest of the list is what is popular.
        if out.count < k { out += nonPersonalized(excluded: taken, k: k - out.count) }
        return out
    }

    /// Anonymous popularity blended with this week's trend; the stronger of the two names the reason.
    private func nonPersonalized(excluded: [Bool], k: Int) -> [RecommendedItem] {
        let n = model.items.count
        let popular = model.popularity, trending = model.trending
        let scores = (0..<n).map { popular[$0] + trending[$0] }
        let top = scores.withUnsafeBufferPointer { TopK.select(scores: $0, k: k) { excluded[$0] } }
        return zip(top.items, top.scores).map { item, score in
            let i = Int(item)
            return trending[i] > popular[i]
                ? RecommendedItem(item: model.items[i], score: score, reason: "trending", explanation: "Trending this week")
                : RecommendedItem(item: model.items[i], score: score, reason: "popular", explanation: "Popular in the shop right now")
        }
    }

    static func segmentReason(level: Int, keys: [String]) -> (String, String) {
        let key = keys[level]
        if key.hasPrefix("region=") { return ("popular-in-your-region", "Popular in your region") }
        if key.hasPrefix("age="), !key.contains("region=") { return ("popular-in-your-age-group", "Popular with shoppers of your age group") }
        return (
            "popular-in-your-segment",
            key.contains("device=") ? "Popular with shoppers like you in your region" : "Popular with your age group in your region"
        )
    }

    private func explain(_ item: Int32, context: UserContext, lastKind: [Int32: InteractionKind], preferContent: Bool) -> (String, String) {
        if !preferContent, let source = model.neighbours.strongestReason(for: item, in: context) {
            let title = model.titles[Int(source)]
            switch lastKind[source] ?? .pageView {
            case .purchase: return ("because-you-bought", "Because you bought \(title)")
            case .searchClick: return ("because-you-searched", "Because you searched for and opened \(title)")
            case .rating: return ("because-you-rated", "Because you rated \(title)")
            case .addToCart: return ("because-you-carted", "Because you added \(title) to your cart")
            default: return ("because-you-viewed", "Because you viewed \(title)")
            }
        }
        if let similar = model.content.mostSimilar(to: item, in: context) {
            let title = model.titles[Int(similar.item)]
            return ("similar-to", preferContent ? "New, and similar to \(title)" : "Similar to \(title)")
        }
        return ("for-you", "Picked for you from your recent activity")
    }
}

/// One recommended item with why it was chosen.
public struct RecommendedItem: Codable, Sendable, Equatable {
    public var item: String
    public var score: Float
    /// `because-you-viewed`, `because-you-bought`, `because-you-searched`, `because-you-rated`, `because-you-carted`,
    /// `similar-to`, `for-you`, `popular-in-your-segment`, `popular-in-your-region`, `popular-in-your-age-group`,
    /// `popular`, `trending`.
    public var reason: String
    public var explanation: String
}

/// What a caller asks of a list: how many, in which categories, without which items, after which items this session.
public struct RecommendationQuery: Sendable {
    public var k = 10
    public var categories: [String] = []
    public var exclude: Set<String> = []
    public var session: [String] = []
    public init() {}
}
