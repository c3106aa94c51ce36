import Foundation
import Synchronization

/// Subjects whose data left the feature store (a withdrawal of personalization, an erasure) but may still be in
/// the served model's item-side parameters (co-occurrences, EASE, ALS item factors, sessions, popularity,
/// segments), until a model trained without them is swapped in.
///
/// Each withdrawal adds its tokens under a new generation, after its deletion committed. A retrain reads the
/// generation before it reads its snapshot: every token enqueued at or below it was deleted before the snapshot, so
/// the model it trains cannot hold them, and they leave the queue when that model is installed. Tokens enqueued
/// later stay, so a retrain racing a withdrawal never clears the subject it may still contain.
public final class UnlearningQueue: Sendable {
    struct Pending: Sendable {
        var since: Date
        var generation: UInt64
    }
    private struct State {
        var generation: UInt64 = 0
        var pending: [String: Pending] = [:]
    }
    private let state = Mutex(State())

    public init() {}

    /// Records that `tokens`' training data was deleted (call after the deletion committed).
    func enqueue(_ tokens: [String], at now: Date) {
        state.withLock { s in
            s.generation += 1
            for token in tokens {
                let since = s.pending[token]?.since ?? now
                s.pending[token] = Pending(since: since, generation: s.generation)
            }
        }
    }

    /// Read before a training snapshot.
    var generation: UInt64 { state.withLock { $0.generation } }

    /// The current generation and every subject enqueued up to it, read together.
    var pending: (generation: UInt64, tokens: Set<String>) { state.withLock { ($0.generation, Set($0.pending.keys)) } }

    /// A model trained from a snapshot read after `generation` was installed: the tokens enqueued up to it are
    /// unlearned. Returns them, with how long each waited; what stays pending may be in the new model.
    func installed(trainedAfter generation: UInt64, at now: Date) -> (unlearned: [(token: String, waited: TimeInterval)], stillPending: Set<String>) {
        state.withLock { s in
            var done: [(String, TimeInterval)] = []
            for (token, p) in s.pending where p.generation <= generation {
                done.append((token, now.timeIntervalSince(p.since)))
                s.pending[token] = nil
            }
            return (done.sorted { $0.0 < $1.0 }, Set(s.pending.keys))
        }
    }

    /// Removes the pending tokens `done` says need no retrain, and returns them.
    @discardableResult
    func settle(_ done: (String) -> Bool) -> [String] {
        state.withLock { s in
            let settled = s.pending.keys.filter(done)
            for token in settled { s.pending[token] = nil }
            return settled
        }
    }

    /// When the oldest pending subject was enqueued; nil when none is.
    var oldest: Date? { state.withLock { $0.pending.values.map(\.since).min() } }

    /// Subjects waiting to be unlearned.
    public var pendingCount: Int { state.withLock { $0.pending.count } }

    public func isPending(_ token: String) -> Bool { state.withLock { $0.pending[token] != nil } }
}
