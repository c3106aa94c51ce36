import Audit
import FeatureStore
import Foundation
import Serving
import Logging
import Persistence
import Policy
import Recommender
import Storage
import Synchronization
import Vault

/// The served models: trained from the feature store (at start, on schedule, on request), tried as a canary and
/// promoted or rolled back, made to unlearn withdrawn and erased subjects within the unlearning delay, and asked
/// whom they were trained on.
public final class Training: Sendable {
    let store: any OperationalStore
    let features: FeatureStore
    let subjects: Subjects
    let models: ModelRegistry
    let unlearning: UnlearningQueue
    let cache: RecommendationCache
    let experiments: ExperimentTracker
    let canary: CanarySettings
    let serving: ServingOptions
    let trainingThreads: Int
    let hooks: TestHooks
    let provenanceFingerprinter: Fingerprinter
    let audit: any AuditTrail
    let metrics: VeilMetrics
    let logger: Logger
    /// Where a retrain reports its phases: the log, with each phase's duration, and whatever the caller added.
    let progress: ProgressReporter
    let now: @Sendable () -> Date
    /// How soon after a withdrawal or an erasure a model trained without the subject must be served.
    public let unlearnWithin: TimeInterval
    /// How soon after a model was unlearned in place its hyperparameters, chosen with the subjects still in the data,
    /// are chosen again by a full retrain.
    public let rechooseWithin: TimeInterval
    /// One retrain at a time: two running at once could install out of order, an older snapshot (with a withdrawn
    /// subject) over a newer one that had settled the queue.
    let retraining = NSLock()
    /// When the last unlearning retrain started, to space them (a stream of withdrawals must not retrain nonstop).
    let lastUnlearning = Mutex<Date?>(nil)
    /// Since when the served model's hyperparameters were chosen on data holding subjects unlearned since; nil when
    /// the last full retrain came after every unlearning.
    let hyperparametersStaleSince = Mutex<Date?>(nil)
    /// When a re-choosing retrain was last attempted.
    let lastRechoose = Mutex<Date?>(nil)
    /// On a database several gateways share: where the one model they all serve is published. Nil otherwise.
    let sharing: ModelSharing?
    /// One adoption of a published model at a time.
    let adopting = NSLock()
    /// The announcement generation of the served model's snapshot (shared databases): an older published model is
    /// never adopted over it.
    let servedGeneration = Mutex<Int64?>(nil)
    /// Versions a model installed here replaced (shared databases): never adopted again, though a failed publish may
    /// leave one published (it may hold a subject this gateway has unlearned since).
    let replacedHere = Mutex<Set<String>>([])
    /// How long a gateway waits for another to finish training (a big shop's training takes minutes).
    static let trainerPatience: Double = 900

    init(
        store: any OperationalStore, features: FeatureStore, subjects: Subjects, models: ModelRegistry, unlearning: UnlearningQueue,
        cache: RecommendationCache, experiments: ExperimentTracker, canary: CanarySettings, serving: ServingOptions, trainingThreads: Int,
        hooks: TestHooks, provenanceFingerprinter: Fingerprinter, audit: any AuditTrail, metrics: VeilMetrics, logger: Logger,
        unlearnWithin: TimeInterval, rechooseWithin: TimeInterval, sharing: ModelSharing?, progress: ProgressReporter,
        now: @escaping @Sendable () -> Date
    ) {
        self.sharing = sharing
        self.progress = progress.and(PhaseLog.reporter(logger))
        self.store = store
        self.features = features
        self.subjects = subjects
        self.models = models
        self.unlearning = unlearning
        self.cache = cache
        self.experiments = experiments
        self.canary = canary
        self.serving = serving
        self.trainingThreads = trainingThreads
        self.hooks = hooks
        self.provenanceFingerprinter = provenanceFingerprinter
        self.audit = audit
        self.metrics = metrics
        self.logger = logger
        self.unlearnWithin = unlearnWithin
        self.rechooseWithin = rechooseWithin
        self.now = now
    }

    /// Trains before the server starts taking requests. A failure is logged with its reason and does not stop the
    /// server: it starts without a model until a scheduled retrain or `POST /v1/model/train` succeeds.
    public func trainAtStart() {
        do {
            // Serving what another gateway published needs no trainer lock: a training elsewhere does not hold up the start.
            if sharing != nil, (try? adoptPublished()) == true { return }
            guard let model = try retrain(unlessPublished: .any)?.model else {
                logger.info("serving the model published on the shared database", metadata: ["model_version": "\(models.versions.stable ?? "none")"])
                return
            }
            if model.users > 0 {
                logger.info("model trained at start", metadata: ["model_version": "\(model.version)", "users": "\(model.users)"])
            }
        } catch {
            logger.error("training at start failed; the server starts without a model", metadata: ["error": "\(loggableReason(error))"])
        }
    }

    /// What a retrain did: the model, the one it replaced, and the subjects it unlearned (gone from the feature store
    /// before its snapshot, so not in it), with how long each waited.
    public struct Retrained: Sendable {
        public let model: ServingModel
        public let replaced: String?
        public let unlearned: [(token: String, waited: TimeInterval)]
        public let method: Method
        /// When the snapshot its data comes from was read, and that snapshot's announcement generation.
        let trainedAt: Date
        let generation: Int64

        public enum Method: Sendable {
            /// Trained from a snapshot read after the subjects' rows were deleted.
            case retrained
            /// The served model with the subjects unlearned (``ServingModel/unlearning(_:)``).
            case unlearned
        }
    }

    /// Retrains from the feature store and swaps the model in atomically.
    @discardableResult
    public func train() throws -> ServingModel { try retrain()?.model ?? models.model! }

    /// When a gateway on a shared database serves the published model instead of training one.
    public enum Freshness: Sendable, Equatable {
        /// Whatever model is published (at start).
        case any
        /// One whose snapshot was read at most this long ago (a schedule: N gateways must not train N times a period).
        case trainedWithin(TimeInterval)
        /// One whose snapshot saw every change announced so far (after a gap in the watch, when what was missed is
        /// unknown).
        case sawEveryAnnouncement
    }

    /// Retrains, swaps the model in, and settles the unlearning queue: subjects deleted before the snapshot are
    /// unlearned; any deleted while it trained stay queued (the model may hold them) and lose at once what the model
    /// holds about them alone. On a shared database, as its only trainer, and publishes the model; nil when a
    /// published model as fresh as `fresh` asks is served instead.
    func retrain(canaryAllowed: Bool = true, unlessPublished fresh: Freshness? = nil) throws -> Retrained? {
        retraining.lock()
        defer { retraining.unlock() }
        guard let sharing else { return try retrainLocked(canaryAllowed: canaryAllowed) }
        let needed = fresh == .sawEveryAnnouncement ? try store.readBlocking { try $0.announcementGeneration() } : 0
        return try asTrainer(sharing) {
            if let fresh, let published = try sharing.published(), models.versions.stable == published.version {
                switch fresh {
                case .any: return nil
                case .trainedWithin(let interval): if now().timeIntervalSince1970 - Double(published.trainedAt) < interval { return nil }
                case .sawEveryAnnouncement: if published.generation >= needed { return nil }
                }
            }
            // A canary would need every gateway to split subjects alike: on a shared database a new model goes to everyone.
            return try retrainLocked(canaryAllowed: false)
        }
    }

    /// Runs `work` as the shared database's only trainer, once this gateway serves the published model, and publishes
    /// the model `work` installed.
    private func asTrainer(_ sharing: ModelSharing, _ work: () throws -> Retrained?) throws -> Retrained? {
        let outcome = try store.asSoleTrainer(patience: Self.trainerPatience) { () throws -> Retrained? in
            do {
                try adoptPublished()
            } catch {
                // An unreadable published model (damaged, or of another format version) must not stop every training.
                logger.error("the published model cannot be loaded; training over it", metadata: ["error": "\(loggableReason(error))"])
            }
            let expected = try sharing.published()?.version
            guard let result = try work() else { return nil }
            // What the registry installed: with whoever was forgotten while it trained forgotten in it too.
            let installed = models.model.flatMap { $0.version == result.model.version ? $0 : nil } ?? result.model
            do {
                let seen = try sharing.publish(installed, trainedAt: result.trainedAt, generation: result.generation, replacing: expected)
                servedGeneration.withLock { $0 = seen }
            } catch {
                // Served here all the same (and audited by the caller); the others keep theirs until the next publish.
                logger.error(
                    "publishing the model failed; the other gateways keep serving theirs",
                    metadata: ["model_version": "\(result.model.version)", "error": "\(loggableReason(error))"])
            }
            return result
        }
        guard let outcome else {
            throw CoreError(
                .unavailable, "trainer_busy",
                "another gateway has been training for \(Int(Self.trainerPatience)) s; its model is served once it publishes it", retryAfter: 60)
        }
        return outcome
    }

    /// Serves the published model of a shared database when it is newer than the one served: what the registry has
    /// forgotten is forgotten in it too, and pending subjects it does not hold are settled. Returns whether it did.
    @discardableResult
    func adoptPublished() throws -> Bool {
        guard let sharing else { return false }
        adopting.lock()
        defer { adopting.unlock() }
        for _ in 0..<3 {
            guard let published = try sharing.published(), published.version != models.versions.stable else { return false }
            // Never back to an older one, nor to one a model trained here replaced (whose publishing failed).
            if let served = servedGeneration.withLock({ $0 }), published.generation < served { return false }
            if replacedHere.withLock({ $0.contains(published.version) }) { return false }
            let model: ServingModel
            do {
                model = try sharing.load(published)
            } catch let error as CoreError where error.code == ModelSharing.retired.code {
                continue
            }
            models.swap(model)
            servedGeneration.withLock { $0 = published.generation }
            cache.clear()
            settleUnlearned()
            logger.info("serving the model another gateway published", metadata: ["model_version": "\(published.version)"])
            return true
        }
        return false
    }

    /// Subjects queued but in no served model (never trained on, or unlearned by a model trained since) need no retrain.
    private func settleUnlearned() {
        let served = [models.model, models.canary].compactMap { $0?.provenance }
        models.settled(unlearning.settle { token in !served.contains { $0.contains(token, fingerprinter: provenanceFingerprinter) } })
    }

    /// Settles what needs no retrain, under the retrain lock, so that no retrain in flight can still install it. Then
    /// unlearns what remains. Nil when nothing did. On a shared database a gateway serving another's model (without its
    /// training data) leaves the unlearning to the one that trained it, which unlearns in place in seconds, for half
    /// the delay; then it retrains itself.
    func unlearnLocked() throws -> Retrained? {
        retraining.lock()
        defer { retraining.unlock() }
        let work = { () throws -> Retrained? in
            self.settleUnlearned()
            guard self.unlearning.pendingCount > 0 else { return nil }
            if let done = self.unlearnIncrementallyLocked() { return done }
            if self.sharing != nil, self.models.model?.training == nil, let oldest = self.unlearning.oldest,
                self.now().timeIntervalSince(oldest) < self.unlearnWithin / 2
            {
                return nil
            }
            return try self.retrainLocked()
        }
        guard let sharing else { return try work() }
        return try asTrainer(sharing, work)
    }

    /// Removes every pending subject from the stable model without a full retrain (``ServingModel/unlearning(_:)``)
    /// and serves the result to everyone (a canary could still hold them). Nil when the model cannot.
    private func unlearnIncrementallyLocked() -> Retrained? {
        let (generation, pending) = unlearning.pending
        guard let stable = models.model, var model = stable.unlearning(pending) else { return nil }
        let announced = servedGeneration.withLock { $0 } ?? 0
        stamp(&model)
        models.swap(model)
        replacedHere.withLock { _ = $0.insert(stable.version) }
        cache.clear()
        let at = now()
        hyperparametersStaleSince.withLock { $0 = $0 ?? at }
        let (unlearned, stillPending) = unlearning.installed(trainedAfter: generation, at: at)
        if !stillPending.isEmpty { models.forget(stillPending) }
        models.settled(unlearned.map(\.token))
        return Retrained(
            model: model, replaced: stable.version, unlearned: unlearned, method: .unlearned, trainedAt: stable.trainedAt ?? at,
            generation: announced)
    }

    /// Records whom the model was trained on; the version names them too, so a model without one more subject is
    /// another version.
    private func stamp(_ model: inout ServingModel) {
        let provenance = ModelProvenance(tokens: model.training?.snapshot.tokens ?? [], fingerprinter: provenanceFingerprinter)
        model.provenance = provenance
        model.version += "-" + provenance.digest.prefix(8)
    }

    private func retrainLocked(canaryAllowed: Bool = true) throws -> Retrained {
        let generation = unlearning.generation  // before the snapshot: see UnlearningQueue
        let started = now()
        let clock = ContinuousClock.now
        ProcessMemory.resetPeak()
        let (snapshot, catalog, announced) = try readTrainingData()
        hooks.trainingSnapshotRead()
        var model = ServingModel.train(
            snapshot: snapshot, catalog: catalog, options: serving, threads: trainingThreads, now: now(), progress: progress)
        let took = ContinuousClock.now - clock
        metrics.recordTraining(seconds: took.seconds, peakBytes: ProcessMemory.peak())
        progress.phase("serving model", "installed")
        stamp(&model)
        let replaced = models.versions.stable
        // While subjects await unlearning the new model goes to everyone: a canary would leave them in the stable one.
        if canaryAllowed, canary.share > 0, unlearning.pendingCount == 0, let stable = models.model, stable.users > 0 {
            // The new model serves a share of subjects first; `evaluateCanary` promotes or rolls it back.
            models.setCanary(model)
            experiments.setCanary(
                ExperimentSpec(
                    name: "canary:\(model.version)",
                    variants: [
                        .init(name: "stable", weight: 1 - canary.share), .init(name: "canary", weight: canary.share),
                    ]))
            logger.notice("new model in canary", metadata: ["model_version": "\(model.version)", "share": "\(canary.share)"])
        } else {
            models.swap(model)
            servedGeneration.withLock { $0 = announced }
            if let replaced { replacedHere.withLock { _ = $0.insert(replaced) } }
            // Everyone is served hyperparameters searched on data read after every unlearning before it started.
            hyperparametersStaleSince.withLock { since in if let s = since, s <= started { since = nil } }
        }
        cache.clear()
        let (unlearned, stillPending) = unlearning.installed(trainedAfter: generation, at: now())
        if !stillPending.isEmpty { models.forget(stillPending) }
        models.settled(unlearned.map(\.token))
        return Retrained(
            model: model, replaced: replaced, unlearned: unlearned, method: .retrained, trainedAt: started, generation: announced)
    }

    /// `train()` as ``Background`` work: on threads of its own at a lower priority, so that training (seconds to minutes
    /// of CPU) neither holds up a cooperative pool thread nor takes the cores from the requests served meanwhile.
    /// Each subject it unlearned gets an audit entry naming the model versions before and after.
    /// On a shared database, with `fresh`, the published model is served instead when it is that fresh.
    @discardableResult
    public func trainOffThePool(unlessPublished fresh: Freshness? = nil) async throws -> ServingModel {
        try await retrainOffThePool { try self.retrain(unlessPublished: fresh) }?.model ?? models.model!
    }

    /// Unlearning is not background work: its delay is a promise to the subject, kept under any load.
    private func retrainOffThePool(background: Bool = true, _ body: @escaping @Sendable () throws -> Retrained?) async throws -> Retrained? {
        let outcome = background ? try await Background.run(body) : try await offThePool(body)
        guard let result = outcome else { return nil }
        for (token, waited) in result.unlearned {
            try await audit.append(
                AuditRecord(
                    actor: "unlearning", role: Role.system, action: SystemAction.modelUnlearn.rawValue,
                    resource: "model \(result.replaced ?? "none") -> \(result.model.version)", subjectToken: token,
                    outcome: .allowed,
                    reason: result.method == .retrained
                        ? "served a model trained without the subject's rows \(Int(waited.rounded(.up))) s after they were deleted"
                        : "served the model with the subject's rows unlearned \(Int(waited.rounded(.up))) s after they were deleted"))
        }
        return result
    }

    /// What the served model was trained on and, given a subject, whether their data is in it (and whether they await
    /// unlearning). The subject is tokenized like any request's.
    public func provenance(subject: String?, principal: Principal, note: AuditNote) async throws -> [String: Any] {
        guard let model = models.model, let provenance = model.provenance else {
            throw CoreError(.unavailable, "no_model", "no model is served yet")
        }
        var out: [String: Any] = [
            "model_version": model.version, "subjects": provenance.subjects, "subjects_digest": provenance.digest,
            "unlearning_pending": unlearning.pendingCount,
        ]
        if let subject {
            let token = try await subjects.token(for: subject, principal: principal)
            note.update { $0.subjectToken = token.rawValue }
            // A linked person's data is trained under its canonical token.
            let canonical = try await subjects.canonical(token)
            let tokens = Set([token.rawValue, canonical.rawValue])
            out["subject"] = [
                "in_model": tokens.contains { provenance.contains($0, fingerprinter: provenanceFingerprinter) },
                "awaiting_unlearning": tokens.contains { unlearning.isPending($0) },
            ]
        }
        return out
    }

    /// Retrains now if a subject has waited long enough to unlearn: requests arriving together are batched into one
    /// retrain, started early enough to finish within ``unlearnWithin``. Returns whether it retrained.
    @discardableResult
    public func unlearnIfDue() async throws -> Bool {
        let at = now()
        guard let oldest = unlearning.oldest, at.timeIntervalSince(oldest) >= min(5, unlearnWithin / 4) else { return false }
        // At most one unlearning retrain per half of the delay, so a stream of withdrawals costs bounded CPU.
        guard
            lastUnlearning.withLock({ last in
                if let last, at.timeIntervalSince(last) < unlearnWithin / 2 { return false }
                last = at
                return true
            })
        else { return false }
        let done = try await retrainOffThePool(background: false) { try self.unlearnLocked() } != nil
        // Nothing to unlearn yet (on a shared database, the trainer still has the time to): the slot stays free.
        if !done { lastUnlearning.withLock { $0 = nil } }
        return done
    }

    /// Retrains in full (hyperparameters searched again) once a model unlearned in place has served with
    /// hyperparameters chosen on data that held the unlearned subjects for ``rechooseWithin``. Returns whether it did.
    @discardableResult
    public func rechooseIfDue() async throws -> Bool {
        let at = now()
        guard let since = hyperparametersStaleSince.withLock({ $0 }), at.timeIntervalSince(since) >= rechooseWithin else { return false }
        // A failed attempt (a damaged store, say) is retried a minute later, not every second.
        guard
            lastRechoose.withLock({ last in
                if let last, at.timeIntervalSince(last) < 60 { return false }
                last = at
                return true
            })
        else { return false }
        // Straight to everyone: a canary would leave the stale model serving most subjects, and a rollback for good.
        _ = try await retrainOffThePool { try self.retrain(canaryAllowed: false) }
        return true
    }

    /// Segments the subjects of the feature store (for `veil segments`). Audited: it reads every subject's data.
    public func segmentReport(view: SegmentModel.View, method: SegmentModel.Method, k: Int?, actor: String) async throws -> SegmentModel? {
        let (snapshot, catalog, _) = try readTrainingData()
        let model = SegmentModel.fit(snapshot: snapshot, catalog: catalog, view: view, method: method, k: k, now: now())
        try await audit.append(
            AuditRecord(
                actor: actor, role: Role.admin, action: SystemAction.segmentsAnalyse.rawValue, resource: "feature store",
                purpose: CorePurpose.personalization.rawValue,
                outcome: .allowed, reason: "\(view.rawValue) view, \(method.rawValue), \(model?.segments.count ?? 0) segments"))
        return model
    }

    /// The snapshot, the catalog and the announcement generation they saw, read together.
    func readTrainingData() throws -> (TrainingSnapshot, [CatalogItem], Int64) {
        try store.readBlocking { db in (try features.trainingSnapshot(in: db), try features.catalog(in: db), try db.announcementGeneration()) }
    }
}

/// Logs each phase of a training with how long it took (logged when the next begins; the retrain's own log line closes
/// the last).
enum PhaseLog {
    static func reporter(_ logger: Logger) -> ProgressReporter {
        let current = Mutex<(key: String, started: ContinuousClock.Instant)?>(nil)
        return ProgressReporter { update in
            let key = "\(update.task) \(update.phase)"
            let finished = current.withLock { state -> (String, Duration)? in
                guard state?.key != key else { return nil }
                defer { state = (key, .now) }
                return state.map { ($0.key, .now - $0.started) }
            }
            if let (phase, took) = finished {
                logger.info("training phase done", metadata: ["phase": "\(phase)", "seconds": "\(String(format: "%.3f", took.seconds))"])
            }
        }
    }
}

extension Duration {
    fileprivate var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
