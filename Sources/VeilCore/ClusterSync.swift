import Logging
import Persistence
import Storage
import Synchronization

/// Keeps what this gateway holds in memory in step with the other gateways on a shared database: it applies what they
/// announce (``Invalidation``: cached lists, data keys, principals, links, the served models' memory of a subject), and
/// while it cannot watch their announcements neither lists, remembered links nor data keys are served from memory.
/// After any gap (a lost watch, a skipped generation) it forgets everything it holds and retrains, since a missed
/// announcement may have been a withdrawal or an erasure that the served model must unlearn; so it does too when the
/// watch begins after a model was trained (at start, from a snapshot the watch does not cover).
public final class ClusterSync: Sendable {
    let store: any OperationalStore
    let cache: RecommendationCache
    let principals: PrincipalStore
    let keys: SubjectKeys
    let forgetting: Forgetting
    let models: ModelRegistry
    let retrain: @Sendable () async -> Void
    let adopt: @Sendable () async -> Void
    let logger: Logger
    private struct State {
        var current = false
        var resyncs = 0
        /// One retrain at a time; a gap during one asks for another after it (its snapshot may predate the gap).
        var retraining = false
        var retrainAgain = false
    }
    private let state = Mutex(State())

    init(
        store: any OperationalStore, cache: RecommendationCache, principals: PrincipalStore, keys: SubjectKeys, forgetting: Forgetting,
        models: ModelRegistry, logger: Logger, retrain: @escaping @Sendable () async -> Void, adopt: @escaping @Sendable () async -> Void
    ) {
        self.adopt = adopt
        self.store = store
        self.cache = cache
        self.principals = principals
        self.keys = keys
        self.forgetting = forgetting
        self.models = models
        self.logger = logger
        self.retrain = retrain
    }

    /// Whether announcements are being watched now (always false for a store no other gateway shares).
    public var isCurrent: Bool { state.withLock { $0.current } }

    /// Watches until the calling task is cancelled; returns at once for a store no other gateway shares. Until the
    /// watch is current, the cache serves nothing.
    public func run() async {
        guard store.isShared else { return }
        cache.fence(true)
        keys.fence(true)
        await store.watchInvalidations { [self] in apply($0) }
    }

    func apply(_ signal: InvalidationSignal) {
        switch signal {
        case .apply(.subject(let token)):
            cache.drop(token: token)
        case .apply(.forgotten(let token, let unlearn)):
            keys.forgetCached(token: token)
            cache.drop(token: token)
            if let token = SubjectToken(rawValue: token) { forgetting.forgetInModels([token], unlearn: unlearn) }
        case .apply(.links):
            cache.clear()
        case .apply(.principals):
            principals.forgetCached()
        case .apply(.model):
            // Loading (hundreds of megabytes for a big shop) happens beside serving; the model served until then
            // already forgets whom the announcements before this one named.
            Task { await adopt() }
        case .lost:
            cache.fence(true)
            keys.fence(true)
            forgetAll()
            let wasCurrent = state.withLock { s -> Bool in
                defer { s.current = false }
                return s.current
            }
            if wasCurrent { logger.warning("lost the watch over other gateways' announcements: serving nothing from memory until it resumes") }
        case .resync:
            forgetAll()
            cache.fence(false)
            keys.fence(false)
            let first = state.withLock { s -> Bool in
                defer { (s.current, s.resyncs) = (true, s.resyncs + 1) }
                return s.resyncs == 0
            }
            if !first {
                logger.warning("announcements from other gateways may have been missed: forgot every cached value; retraining")
                scheduleRetrain()
            } else if models.versions.stable != nil {
                scheduleRetrain()
            }
        }
    }

    private func scheduleRetrain() {
        let start = state.withLock { s -> Bool in
            guard !s.retraining else {
                s.retrainAgain = true
                return false
            }
            s.retraining = true
            return true
        }
        guard start else { return }
        Task {
            repeat {
                await retrain()
            } while state.withLock { s -> Bool in
                defer { s.retrainAgain = false }
                s.retraining = s.retrainAgain
                return s.retrainAgain
            }
        }
    }

    private func forgetAll() {
        cache.clear()
        principals.forgetCached()
        keys.clearCache()
    }
}
