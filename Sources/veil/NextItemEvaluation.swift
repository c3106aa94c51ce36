import ArgumentParser
import Foundation
import Ingestion
import Recommender

/// `veil evaluate --task next-item`: session models on sessions cut from time-ordered interactions.
enum NextItem {
    static let models = ["gru4rec", "session-knn", "item-knn", "popularity"]

    struct Data {
        var train: [[Int32]]
        var test: [[Int32]]
        var items: Int
        var description: String
    }

    /// MovieLens-style files: train sessions from the train file, test sessions from the test file (each user's
    /// later ratings), both cut where a user paused more than an hour. Test items never seen in train are dropped.
    static func fromSplit(train: [RatingRow], test: [RatingRow]) -> Data {
        var itemIndex: [String: Int32] = [:], userIndex: [String: Int32] = [:]
        func user(_ id: String) -> Int32 {
            if let u = userIndex[id] { return u }
            userIndex[id] = Int32(userIndex.count)
            return Int32(userIndex.count - 1)
        }
        let trainInteractions = train.map { row -> Interaction in
            let i =
                itemIndex[row.item]
                ?? {
                    itemIndex[row.item] = Int32(itemIndex.count); return Int32(itemIndex.count - 1)
                }()
            return Interaction(user: user(row.user), item: i, time: row.timestamp)
        }
        let testInteractions = test.compactMap { row in itemIndex[row.item].map { Interaction(user: user(row.user), item: $0, time: row.timestamp) } }
        return Data(
            train: SessionData.sessions(from: trainInteractions, gap: 3600).map(\.items),
            test: SessionData.sessions(from: testInteractions, gap: 3600).map(\.items),
            items: itemIndex.count, description: "ml split files, sessions cut at 1 h gaps")
    }

    /// The sample shop's page views, purchases, search clicks and feedback, cut at 30 min gaps; sessions that
    /// start in the last fifth of the period are the test set.
    static func fromSampleShop() -> Data {
        let shop = SampleShop(users: 600, items: 500, days: 60, seed: 7)
        let itemIndex = Dictionary(uniqueKeysWithValues: shop.items.enumerated().map { ($1.id, Int32($0)) })
        let userIndex = Dictionary(uniqueKeysWithValues: shop.users.enumerated().map { ($1.id, Int32($0)) })
        var interactions: [Interaction] = []
        for e in shop.events {
            guard let u = userIndex[e.subject], let t = Clean.timestamp(e.timestamp) else { continue }
            let items = [e.item].compactMap { $0 } + (e.lines ?? []).map(\.item) + (e.clicked ?? []).map(\.item)
            for item in items { if let i = itemIndex[item] { interactions.append(Interaction(user: u, item: i, time: t)) } }
        }
        let sessions = SessionData.sessions(from: interactions, gap: 1800)
        let first = sessions.first?.start ?? 0, last = sessions.last?.start ?? 0
        let cut = first + (last - first) * 4 / 5
        return Data(
            train: sessions.filter { $0.start < cut }.map(\.items), test: sessions.filter { $0.start >= cut }.map(\.items),
            items: shop.items.count,
            description: "sample shop (600 users, 500 items, 60 days, seed 7), sessions cut at 30 min gaps, last fifth of time as test")
    }
}

extension EvaluateCommand {
    func runNextItem() throws {
        let data =
            sampleShop
            ? NextItem.fromSampleShop()
            : NextItem.fromSplit(train: try Dataset.parseRatings(readText(train!)), test: try Dataset.parseRatings(readText(test!)))
        let names = model == "all" ? NextItem.models : [model]
        if !json {
            print("next-item on \(data.description): \(data.train.count) train sessions, \(data.test.count) test sessions, \(data.items) items")
            print("| model | HitRate@\(k) | MRR@\(k) | train s | score s |")
            print("|---|---|---|---|---|")
        }
        let clock = ContinuousClock()
        for name in names {
            var scorer: (@Sendable ([Int32], UnsafeMutableBufferPointer<Float>) -> Void)!
            let items = data.items
            let trainTime = clock.measure {
                switch name {
                case "gru4rec":
                    var cfg = GRU4Rec.Configuration()
                    cfg.epochs = epochs
                    cfg.seed = seed
                    let gru = GRU4Rec(cfg).fit(sessions: data.train, items: items)
                    scorer = { gru.score(session: $0, into: $1) }
                case "session-knn":
                    let sknn = SessionKNN(sessions: data.train, items: items)
                    scorer = { sknn.score(session: $0, into: $1) }
                case "item-knn":
                    let matrix = SparseMatrix(
                        users: data.train.count, items: items,
                        interactions: data.train.enumerated().flatMap { s, session in session.map { Interaction(user: Int32(s), item: $0) } })
                    let knn = ItemKNN(similarity: .cosine, neighbours: 100).fit(matrix)
                    // The classic session baseline: neighbours of the last item.
                    scorer = { prefix, out in knn.score(UserContext(user: nil, items: [prefix.last!]), into: out) }
                default:
                    var counts = [Float](repeating: 0, count: items)
                    for s in data.train { for i in s { counts[Int(i)] += 1 } }
                    let popularity = counts
                    scorer = { _, out in for i in 0..<out.count { out[i] = popularity[i] } }
                }
            }
            var result: (hitRate: Double, mrr: Double, predictions: Int) = (0, 0, 0)
            let scoreTime = clock.measure { result = SessionData.evaluate(data.test, k: k, itemCount: items, threads: threads, scorer: scorer) }
            if json {
                print(
                    "{\"task\":\"next-item\",\"model\":\"\(name)\",\"hit_rate\":\(fmt(result.hitRate)),\"mrr\":\(fmt(result.mrr)),\"predictions\":\(result.predictions),\"train_s\":\(fmt(trainTime.seconds)),\"score_s\":\(fmt(scoreTime.seconds))}"
                )
            } else {
                print("| \(name) | \(fmt(result.hitRate)) | \(fmt(result.mrr)) | \(fmt(trainTime.seconds, 3)) | \(fmt(scoreTime.seconds, 3)) |")
            }
        }
    }
}
