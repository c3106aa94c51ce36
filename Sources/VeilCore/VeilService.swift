import Audit
import Consent
import FeatureStore
import Foundation
import NIOCore
import Ingestion
import Logging
import Policy
import Prometheus
import Pseudonymization
import Recommender
import Persistence
import Storage
import Synchronization
import Vault

/// Everything a running Veil instance needs, opened once and shared by every request.
/// The privacy path of each operation is written here, in order; the modules do the work.
public final class VeilService: Sendable {
    public let paths: RuntimePaths
    public let ring: KeyRing
    public let policy: PolicySet
    public let store: any OperationalStore
    public let keys: SubjectKeys
    public let tokenizer: Tokenizer
    public let ledger: ConsentLedger
    public let identities: IdentityMap
    public let linker: IdentityLinker
    public let features: FeatureStore
    public let deliveries = DeliveryLog()
    public let audit: AuditLog
    /// Subject, actor and time queries of the audit log without a scan.
    public let auditIndex: AuditIndex
    public let principals: PrincipalStore
    public let models = ModelRegistry()
    /// Subjects whose data is gone but who may still shape the served model's item-side parameters.
    public let unlearning = UnlearningQueue()
    /// One retrain at a time: two running at once could install out of order, an older snapshot (with a withdrawn
    /// subject) over a newer one that had settled the queue.
    let retraining = NSLock()
    /// When the last unlearning retrain started, to space them (a stream of withdrawals must not retrain nonstop).
    let lastUnlearning = Mutex<Date?>(nil)
    /// How soon after a withdrawal or an erasure a model trained without the subject must be served.
    public let unlearnWithin: TimeInterval
    /// How soon after a model was unlearned in place its hyperparameters, chosen with the subjects still in the data,
    /// are chosen again by a full retrain.
    public let rechooseWithin: TimeInterval
    /// Since when the served model's hyperparameters were chosen on data holding subjects unlearned since; nil when
    /// the last full retrain came after every unlearning.
    let hyperparametersStaleSince = Mutex<Date?>(nil)
    /// When a re-choosing retrain was last attempted.
    let lastRechoose = Mutex<Date?>(nil)
    public let cache: RecommendationCache
    public let parser = EventParser()
    public let metrics = VeilMetrics()
    public let rateLimiter: RateLimiter
    /// Room on the disks under the data and the audit log (readiness, `storage_full`).
    public let storage: StorageHealth
    /// Refusals before authentication, per client fingerprint and window.
    public let refusals: RefusalLog
    /// Fingerprints client addresses (the addresses are never stored).
    let clientFingerprinter: Fingerprinter
    /// Fingerprints the subjects a model was trained on (never the tokens themselves).
    let provenanceFingerprinter: Fingerprinter
    public let logger: Logger
    /// Points where a test can hold a request to force an interleaving (no-ops otherwise).
    public let hooks = TestHooks()
    /// Keys event deliveries for deduplication.
    public let deliveryKeys: DeliveryKeying
    /// Subject ids to tokens, and identity links.
    public let subjects: Subjects
    /// Consent decisions, state, history and the ledger's verification.
    public let consent: ConsentService
    /// Export and erasure.
    public let rights: SubjectRights
    /// The retention job.
    public let retention: Retention
    /// Events and the catalog.
    public let intake: IngestService
    /// Recommendations.
    public let recommendations: Recommendations
    /// Data quality per source.
    public let dataQuality: DataQualityMonitor
    let forgetting: Forgetting
    /// Signed-in users of the compliance console (in this process).
    public let consoleSessions = ConsoleSessions()
    public let now: @Sendable () -> Date
    let trainingThreads: Int
    let passphrase: String?
    /// Exclusions, content similarity and segment size used by every retrain.
    public let serving: ServingOptions
    /// Thresholds of the data-quality check (readiness turns red when one is crossed).
    public let quality: QualityThresholds
    public let ingestionSettings: IngestionSettings
    let outliers: OutlierDetector
    /// Hashes search terms into the content model's feature space (its width comes from the serving options).
    let termHasher: FeatureHasher
    let sourceQuality = SourceQualityLog()
    /// A/B tests and the canary of a new model: assignment, exposures and outcomes.
    public let experiments: ExperimentTracker
    public let canary: CanarySettings
    /// Campaigns and the contextual bandits that set how strongly their items are boosted.
    public let promotions: PromotionBandits

    /// The purpose that feeds the feature store and the recommender.
    static let personalization = "personalization"

    /// Opens the key ring, the policy, the audit log and the principals, over `store` (the operational database, opened
    /// by the caller with the backend of its choice).
    public init(
        paths: RuntimePaths, store: any OperationalStore, passphrase: String?, cacheTTL: TimeInterval = 30, cacheMaxEntries: Int = 50_000,
        cacheMaxBytes: Int = 64 << 20,
        checkpointInterval: Int64 = AuditLog.defaultCheckpointInterval,
        trainingThreads: Int = 2, rateLimits: [String: RateLimit] = RateLimiter.defaults, serving: ServingOptions = ServingOptions(),
        ingestion: IngestionSettings = IngestionSettings(), quality: QualityThresholds = QualityThresholds(),
        experiments: [ExperimentSpec] = [], canary: CanarySettings = CanarySettings(), campaigns: [Campaign] = [],
        unlearnWithin: TimeInterval = 60, rechooseWithin: TimeInterval = 3600, auditFullSync: Bool = true,
        checkpointMaxAge: Duration? = AuditLog.defaultCheckpointMaxAge,
        refusalLimits: RefusalLimits = RefusalLimits(), logger: Logger = Logger(label: "veil"),
        now: @escaping @Sendable () -> Date = Date.init
    ) throws {
        self.paths = paths
        ring = try KeyRing.load(directory: paths.keysDirectory, passphrase: passphrase)
        policy = try PolicyParser.load(directory: paths.policiesDirectory)
        self.store = store
        keys = SubjectKeys(ring: ring)
        tokenizer = Tokenizer(ring.fingerprinter(for: .subjectTokens))
        ledger = ConsentLedger(policy: policy)
        identities = IdentityMap(keys: keys)
        linker = IdentityLinker(fingerprinter: ring.fingerprinter(for: .identityLinking))
        features = FeatureStore(keys: keys)
        audit = try AuditLog(
            path: paths.auditDatabase, signer: ring.auditSigner, checkpointInterval: checkpointInterval,
            checkpointMaxAge: checkpointMaxAge, fullSync: auditFullSync, now: now)
        auditIndex = try AuditIndex(path: paths.auditIndexDatabase, log: audit.store)
        principals = PrincipalStore(store: store, ring: ring, now: now)
        cache = RecommendationCache(ttl: cacheTTL, maxEntries: cacheMaxEntries, maxBytes: cacheMaxBytes)
        rateLimiter = RateLimiter(limits: rateLimits)
        refusals = RefusalLog(limits: refusalLimits)
        storage = StorageHealth(directories: [paths.dataDirectory, (paths.auditDatabase as NSString).deletingLastPathComponent, paths.keysDirectory])
        clientFingerprinter = ring.fingerprinter(for: .clientAddress)
        provenanceFingerprinter = ring.fingerprinter(for: .modelProvenance)
        self.logger = logger
        self.now = now
        self.trainingThreads = trainingThreads
        self.unlearnWithin = unlearnWithin
        self.rechooseWithin = rechooseWithin
        self.passphrase = passphrase
        var serving = serving
        serving.segmentsForCampaigns = campaigns.contains { !$0.segments.isEmpty }
        self.serving = serving
        self.ingestionSettings = ingestion
        self.quality = quality
        outliers = OutlierDetector(policy: ingestion.outliers)
        termHasher = FeatureHasher(width: serving.contentHashWidth)
        self.experiments = ExperimentTracker(experiments: experiments)
        self.canary = canary
        promotions = try PromotionBandits(campaigns: campaigns, store: store)
        if !promotions.discarded.isEmpty {
            logger.warning(
                "saved promotion bandits do not fit their campaigns any more; they start cold",
                metadata: ["campaigns": "\(promotions.discarded.sorted())"])
        }
        deliveryKeys = DeliveryKeying(ring: ring, legacyRemain: try store.readBlocking { try DeliveryLog().hasLegacy(in: $0) })
        subjects = Subjects(
            tokenizer: tokenizer, linker: linker, store: store, policy: policy, principals: principals, cache: cache, audit: audit, now: now)
        forgetting = Forgetting(
            store: store, features: features, models: models, unlearning: unlearning, promotions: promotions, logger: logger, now: now)
        consent = ConsentService(
            subjects: subjects, ledger: ledger, identities: identities, keys: keys, features: features, store: store, policy: policy,
            forgetting: forgetting, cache: cache, metrics: metrics, now: now)
        rights = SubjectRights(
            subjects: subjects, ledger: ledger, linker: linker, identities: identities, keys: keys, features: features,
            deliveries: deliveries, store: store, policy: policy, forgetting: forgetting, cache: cache, models: models,
            serving: self.serving, now: now)
        dataQuality = DataQualityMonitor(
            store: store, sourceQuality: sourceQuality, thresholds: quality, metrics: metrics, logger: logger, now: now)
        intake = IngestService(
            parser: parser, policy: policy, principals: principals, tokenizer: tokenizer, termHasher: termHasher, deliveryKeys: deliveryKeys,
            linker: linker, ledger: ledger, deliveries: deliveries, features: features, identities: identities, sourceQuality: sourceQuality,
            keys: keys, store: store, cache: cache, experiments: self.experiments, promotions: promotions, outliers: outliers,
            quality: dataQuality, metrics: metrics, now: now)
        recommendations = Recommendations(
            subjects: subjects, cache: cache, models: models, experiments: self.experiments, promotions: promotions, store: store,
            ledger: ledger, features: features, metrics: metrics, hooks: hooks, now: now)
        retention = Retention(
            ledger: ledger, keys: keys, features: features, deliveries: deliveries, deliveryKeys: deliveryKeys, store: store,
            policy: policy, forgetting: forgetting, cache: cache, audit: audit, now: now)
    }

    // MARK: - Training

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
        let (snapshot, catalog) = try readTrainingData()
        hooks.trainingSnapshotRead()
        var model = ServingModel.train(snapshot: snapshot, catalog: catalog, options: serving, threads: trainingThreads, now: now())
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

    /// `train()` on a thread of its own: training takes seconds of CPU, which on one of the cooperative pool's
    /// threads (as many as there are cores) would hold up the requests queued behind it.
    /// Each subject it unlearned gets an audit entry naming the model versions before and after.
    @discardableResult
    public func trainOffThePool() async throws -> ServingModel {
        try await retrainOffThePool { try self.retrain() }!.model
    }

    private func retrainOffThePool(_ body: @escaping @Sendable () throws -> Retrained?) async throws -> Retrained? {
        let outcome = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Retrained?, any Error>) in
            DispatchQueue.global(qos: .utility).async {
                continuation.resume(with: Result { try body() })
            }
        }
        guard let result = outcome else { return nil }
        for (token, waited) in result.unlearned {
            try await audit.append(
                AuditRecord(
                    actor: "unlearning", role: "system", action: "model:unlearn",
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
        return try await retrainOffThePool { try self.unlearnLocked() } != nil
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
}

// MARK: - Benchmark hooks

extension VeilService {
    /// Creates an app principal and records consents for a generated shop (7 of 8 subjects opt in).
    public func benchPrepare(shop: SampleShop) async throws -> Principal {
        let principal = Principal(name: "bench-app", role: "app", namespace: "default")
        let note = AuditNote()
        for (n, user) in shop.users.enumerated() {
            let request = ConsentService.ConsentRequest(
                subject: user.id, purpose: "personalization", granted: n % 8 != 7, method: "banner",
                notice_version: "2026-01", jurisdiction: "EU", expires_at: nil, gpc: nil)
            _ = try await consent.record(request, principal: principal, gpcHeader: false, note: note)
        }
        return principal
    }

    /// One batch through the same path as `POST /v1/events`, including its audit entry.
    public func benchIngest(body: [UInt8], principal: Principal) async throws -> Int {
        let note = AuditNote()
        let result = try await intake.ingest(body: body, principal: principal, gpcHeader: false, note: note)
        try await audit.append(
            AuditRecord(
                actor: principal.name, role: principal.role, action: "events:write", resource: "POST /v1/events",
                purpose: "personalization", outcome: .allowed, reason: note.snapshot.reason, requestID: "bench"))
        return result.accepted
    }
}

// MARK: - Key rotation while serving

extension VeilService {
    /// Adds a master key version, swaps the reloaded ring in while requests keep running, then re-wraps every
    /// stored data key under it in batches. The caller audits it (the HTTP route through its request entry).
    public func rotateAndRewrap() async throws -> (version: UInt32, rewrapped: Int) {
        // Argon2id for a passphrase, once per master version: off the cooperative pool.
        let (directory, passphrase) = (paths.keysDirectory, self.passphrase)
        let (version, ring) = try await offThePool {
            let version = try KeyRing.rotate(directory: directory, passphrase: passphrase)
            return (version, try KeyRing.load(directory: directory, passphrase: passphrase))
        }
        keys.replaceRing(ring)
        var total = 0
        while true {
            let keys = self.keys, store = self.store
            let n = try await offThePool { try keys.rewrapBatch(in: store, batchSize: 200) }
            if n == 0 { break }
            total += n
            await Task.yield()
        }
        return (version, total)
    }
}
