import FeatureStore
import Foundation
import Recommender

/// Turns a subject's history into a ranked, filtered, explained list with the serving model.
struct Ranker {
    let model: ServingModel

    struct Result {
        var personalized: Bool
        var items: [RecommendedItem]
    }

    func rank(history: [StoredInteraction], session: [String], query: VeilService.RecommendationQuery, now: Date) -> Result {
        let n = model.items.count
        var weights: [Int32: Float] = [:]
        var lastKind: [Int32: String] = [:]
        for h in history {
            guard let i = model.itemIndex[h.item] else { continue }
            weights[i, default: 0] += h.weight
            lastKind[i] = h.kind
        }
        for item in session {
            guard let i = model.itemIndex[item] else { continue }
            weights[i, default: 0] += 1
            lastKind[i] = lastKind[i] ?? "page_view"
        }
        let personalized = !weights.isEmpty
        var excluded = [Bool](repeating: false, count: n)
        for i in 0..<n where !model.available[i] { excluded[i] = true }
        for id in query.exclude { if let i = model.itemIndex[id] { excluded[Int(i)] = true } }
        for i in weights.keys { excluded[Int(i)] = true }
        if !query.categories.isEmpty {
            for i in 0..<n where !query.categories.contains(where: { model.categories[i] == $0 || model.categories[i].hasPrefix($0 + "/") }) {
                excluded[i] = true
            }
        }
        var scores = [Float](repeating: 0, count: n)
        let context = UserContext(user: nil, items: Array(weights.keys).sorted(), weights: Array(weights.keys).sorted().map { weights[$0]! },
                                  time: Int64(now.timeIntervalSince1970))
        scores.withUnsafeMutableBufferPointer { out in
            if personalized {
                model.ranker.score(context, into: out)
            } else {
                for i in 0..<n { out[i] = i < model.popularity.count ? model.popularity[i] : 0 }
            }
        }
        let top = scores.withUnsafeBufferPointer { TopK.select(scores: $0, k: query.k) { excluded[$0] } }
        var items: [RecommendedItem] = []
        for (item, score) in zip(top.items, top.scores) {
            let (reason, explanation) = personalized ? explain(item, context: context, lastKind: lastKind) : ("popular", "Popular in the shop right now")
            items.append(RecommendedItem(item: model.items[Int(item)], score: score, reason: reason, explanation: explanation))
        }
        return Result(personalized: personalized, items: items)
    }

    private func explain(_ item: Int32, context: UserContext, lastKind: [Int32: String]) -> (String, String) {
        guard let source = model.neighbours.strongestReason(for: item, in: context) else {
            return ("for-you", "Picked for you from your recent activity")
        }
        let title = model.titles[Int(source)]
        switch lastKind[source] ?? "page_view" {
        case "purchase": return ("because-you-bought", "Because you bought \(title)")
        case "search_click": return ("because-you-searched", "Because you searched for and opened \(title)")
        case "rating": return ("because-you-rated", "Because you rated \(title)")
        case "add_to_cart": return ("because-you-carted", "Because you added \(title) to your cart")
        default: return ("because-you-viewed", "Because you viewed \(title)")
        }
    }
}
