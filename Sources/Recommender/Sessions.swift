import Foundation

/// Session-based k-nearest neighbours (V-SKNN, Ludewig & Jannach 2018): the current session is compared with
/// past sessions by cosine similarity over their items, later items of the current session weighing more;
/// an item scores the summed similarity of the neighbour sessions that contain it.
public struct SessionKNN: Sendable {
    public let itemCount: Int
    public let neighbours: Int
    /// At most this many candidate sessions (the most recent that share an item) are compared.
    public let sampleSize: Int
    let sessions: [[Int32]]
    /// Per session, the user it came from (when known): what unlearning a user removes.
    public let owners: [Int32]?
    /// item → indices of the sessions containing it, newest first.
    let sessionsOfItem: [[Int32]]

    public init(sessions: [[Int32]], owners: [Int32]? = nil, items: Int, neighbours: Int = 100, sampleSize: Int = 500) {
        precondition(owners == nil || owners!.count == sessions.count)
        self.owners = owners
        self.itemCount = items
        self.neighbours = neighbours
        self.sampleSize = sampleSize
        self.sessions = sessions.map { Array(Set($0)).sorted() }
        var index = [[Int32]](repeating: [], count: items)
        for (s, session) in self.sessions.enumerated().reversed() {
            for i in session where Int(i) < items { index[Int(i)].append(Int32(s)) }
        }
        sessionsOfItem = index
    }

    /// Scores of every item as the next one after `session` (in order, oldest first).
    public func score(session: [Int32], into out: UnsafeMutableBufferPointer<Float>) {
        for i in 0..<out.count { out[i] = 0 }
        guard !session.isEmpty else { return }
        // Position weights: the last item counts 1, the first 1/n.
        var weight: [Int32: Float] = [:]
        for (p, item) in session.enumerated() where Int(item) < itemCount { weight[item] = Float(p + 1) / Float(session.count) }
        var candidates = Set<Int32>()
        for item in session.reversed() where Int(item) < itemCount {
            for s in sessionsOfItem[Int(item)] {
                if candidates.count >= sampleSize { break }
                candidates.insert(s)
            }
        }
        let norm = Float(weight.count).squareRoot()
        var scored: [(Int32, Float)] = candidates.map { s in
            let other = sessions[Int(s)]
            var dot: Float = 0
            for i in other { dot += weight[i] ?? 0 }
            return (s, dot / (norm * Float(other.count).squareRoot()))
        }
        scored.sort { ($0.1, $1.0) > ($1.1, $0.0) }
        for (s, similarity) in scored.prefix(neighbours) where similarity > 0 {
            for i in sessions[Int(s)] { out[Int(i)] += similarity }
        }
    }
}

/// Sessions cut from time-ordered interactions, and the next-item protocol over them.
public enum SessionData {
    /// Per user, items ordered by time, cut where two interactions are more than `gap` seconds apart; long
    /// sessions are cut into pieces of at most `maxLength`. Sessions shorter than 2 items are dropped.
    public static func sessions(from interactions: [Interaction], gap: Int64, maxLength: Int = 20) -> [(user: Int32, start: Int64, items: [Int32])] {
        var perUser: [Int32: [Interaction]] = [:]
        for x in interactions { perUser[x.user, default: []].append(x) }
        var out: [(Int32, Int64, [Int32])] = []
        for user in perUser.keys.sorted() {
            let rows = perUser[user]!.sorted { ($0.time, $0.item) < ($1.time, $1.item) }
            var current: [Int32] = []
            var start: Int64 = 0, last: Int64 = 0
            func flush() {
                for chunk in stride(from: 0, to: current.count, by: maxLength) {
                    let piece = Array(current[chunk..<min(chunk + maxLength, current.count)])
                    if piece.count >= 2 { out.append((user, start, piece)) }
                }
                current = []
            }
            for x in rows {
                if !current.isEmpty && x.time - last > gap { flush() }
                if current.isEmpty { start = x.time }
                current.append(x.item)
                last = x.time
            }
            flush()
        }
        return out.sorted { ($0.1, $0.0) < ($1.1, $1.0) }
    }

    /// HitRate@k and MRR@k of next-item predictions: for every position t ≥ 1 of every test session, the
    /// model sees items 0..<t and must rank item t; items already in the prefix are not candidates.
    public static func evaluate(
        _ sessions: [[Int32]], k: Int, itemCount: Int, threads: Int = 1,
        scorer: @Sendable ([Int32], UnsafeMutableBufferPointer<Float>) -> Void
    ) -> (hitRate: Double, mrr: Double, predictions: Int) {
        let cases = sessions.flatMap { s in (1..<s.count).map { (s, $0) } }.filter { Int($0.0[$0.1]) < itemCount }
        var hits = [Double](repeating: 0, count: cases.count), ranks = [Double](repeating: 0, count: cases.count)
        hits.withShared { hitOut in
            ranks.withShared { rankOut in
                parallelChunks(count: cases.count, threads: threads) { range in
                    var scores = [Float](repeating: 0, count: itemCount)
                    for c in range {
                        let (session, t) = cases[c]
                        let prefix = Array(session[0..<t])
                        let seen = Set(prefix)
                        scores.withUnsafeMutableBufferPointer { out in
                            scorer(prefix, out)
                            let top = TopK.select(scores: UnsafeBufferPointer(out), k: k) { seen.contains(Int32($0)) }
                            if let rank = top.items.firstIndex(of: session[t]) {
                                (hitOut.base + c).pointee = 1
                                (rankOut.base + c).pointee = 1 / Double(rank + 1)
                            }
                        }
                    }
                }
            }
        }
        let n = Double(max(cases.count, 1))
        return (hits.reduce(0, +) / n, ranks.reduce(0, +) / n, cases.count)
    }
}
