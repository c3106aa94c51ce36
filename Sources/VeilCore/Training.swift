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

    init(
        store: any OperationalStore, features: FeatureStore, subjects: Subjects, models: ModelRegistry, unlearning: UnlearningQueue,
        cache: RecommendationCache, experiments: ExperimentTracker, canary: CanarySettings, serving: ServingOptions, trainingThreads: Int,
        hooks: TestHooks, provenanceFingerprinter: Fingerprinter, audit: any AuditTrail, metrics: VeilMetrics, logger: Logger,
        unlearnWithin: TimeInterval,
        rechooseWithin: TimeInterval, progress: ProgressReporter, now: @escaping @Sendable () -> Date
    ) {
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
            let model = try train()
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

        public enum Method: Sendable {
            /// Trained from a snapshot read after the subjects' rows were deleted.
            case retrained
            /// The served model with the subjects unlearned (``ServingModel/unlearning(_:)``).
            case unlearned
        }
    }

    /// Retrains from the feature store and swaps the model in atomically.
    @discardableResult
    public func train() throws -> ServingModel { try retrain().model }

    /// Retrains, swaps the model in, and settles the unlearning queue: subjects deleted before the snapshot are
    /// unlearned; any deleted while it trained stay queued (the model may hold them) and lose at once what the model
    /// holds about them alone.
    func retrain(canaryAllowed: Bool = true) throws -> Retrained {
        retraining.lock()
        defer { retraining.unlock() }
        return try retrainLocked(canaryAllowed: canaryAllowed)
    }

    /// Subjects queued but in no served model (never trained on, or unlearned by a model trained since) need no
    /// retrain: settled here, under the retrain lock, so that no retrain in flight can still install them. Then
    /// retrains if any remain. Nil when none did.
    func unlearnLocked() throws -> Retrained? {
        retraining.lock()
        defer { retraining.unlock() }
        let served = [models.model, models.canary].compactMap { $0?.provenance }
        models.settled(unlearning.settle { token in !served.contains { $0.contains(token, fingerprinter: provenanceFingerprinter) } })
        guard unlearning.pendingCount > 0 else { return nil }
        return try unlearnIncrementallyLocked() ?? retrainLocked()
    }

    /// Removes every pending subject from the stable model without a full retrain (``ServingModel/unlearning(_:)``)
    /// and serves the result to everyone (a canary could still hold them). Nil when the model cannot.
    private func unlearnIncrementallyLocked() -> Retrained? {
        let (generation, pending) = unlearning.pending
        guard let stable = models.model, var model = stable.unlearning(pending) else { return nil }
        stamp(&model)
        models.swap(model)
        cache.clear()
        let at = now()
        hyperparametersStaleSince.withLock { $0 = $0 ?? at }
        let (unlearned, stillPending) = unlearning.installed(trainedAfter: generation, at: at)
        if !stillPending.isEmpty { models.forget(stillPending) }
        models.settled(unlearned.map(\.token))
        return Retrained(model: model, replaced: stable.version, unlearned: unlearned, method: .unlearned)
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
        let (snapshot, catalog) = try readTrainingData()
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
            // Everyone is served hyperparameters searched on data read after every unlearning before it started.
            hyperparametersStaleSince.withLock { since in if let s = since, s <= started { since = nil } }
        }
        cache.clear()
        let (unlearned, stillPending) = unlearning.installed(trainedAfter: generation, at: now())
        if !stillPending.isEmpty { models.forget(stillPending) }
        models.settled(unlearned.map(\.token))
        return Retrained(model: model, replaced: replaced, unlearned: unlearned, method: .retrained)
    }

    /// `train()` as ``Background`` work: on threads of its own at a lower priority, so that training (seconds to minutes
    /// of CPU) neither holds up a cooperative pool thread nor takes the cores from the requests served meanwhile.
    /// Each subject it unlearned gets an audit entry naming the model versions before and after.
    @discardableResult
    public func trainOffThePool() async throws -> ServingModel {
        try await retrainOffThePool { try self.retrain() }!.model
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
        return try await retrainOffThePool(background: false) { try self.unlearnLocked() } != nil
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
        let (snapshot, catalog) = try readTrainingData()
        let model = SegmentModel.fit(snapshot: snapshot, catalog: catalog, view: view, method: method, k: k, now: now())
        try await audit.append(
            AuditRecord(
                actor: actor, role: Role.admin, action: SystemAction.segmentsAnalyse.rawValue, resource: "feature store",
                purpose: CorePurpose.personalization.rawValue,
                outcome: .allowed, reason: "\(view.rawValue) view, \(method.rawValue), \(model?.segments.count ?? 0) segments"))
        return model
    }

    func readTrainingData() throws -> (TrainingSnapshot, [CatalogItem]) {
        try store.readBlocking { db in (try features.trainingSnapshot(in: db), try features.catalog(in: db)) }
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
