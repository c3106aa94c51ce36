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
    /// Item → category path, for per-category outlier statistics; loaded on first use, updated by `PUT /v1/items`.
    private let categories = Mutex<[String: String]?>(nil)
    /// A/B tests and the canary of a new model: assignment, exposures and outcomes.
    public let experiments: ExperimentTracker
    public let canary: CanarySettings
    /// Campaigns and the contextual bandits that set how strongly their items are boosted.
    public let promotions: PromotionBandits
    let qualityWatch = Mutex<(lastCheck: Date, unhealthy: Set<String>)>((.distantPast, []))

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
        retention = Retention(
            ledger: ledger, keys: keys, features: features, deliveries: deliveries, deliveryKeys: deliveryKeys, store: store,
            policy: policy, forgetting: forgetting, cache: cache, audit: audit, now: now)
    }

    func catalogCategories() -> [String: String] {
        if let known = categories.withLock({ $0 }) { return known }
        let loaded =
            (try? store.readBlocking { db in try features.catalog(in: db) }.reduce(into: [String: String]()) { $0[$1.id] = $1.category }) ?? [:]
        categories.withLock { $0 = loaded }
        return loaded
    }

    // MARK: - Events

    /// An event with the work that needs no database done.
    struct PreparedEvent: Sendable {
        let event: CleanEvent
        /// The subject's token in the sending namespace, before identity links.
        let source: SubjectToken
        /// Keyed hashes of the event id and of its content, for deduplication.
        let delivery: DeliveryLog.Keys
        /// The minimized fields; nil when the personalization purpose does not cover the event's category.
        let kept: [String: FieldValue]?
        /// Signed hash buckets of a search query's words.
        let terms: [Int32]
    }

    /// Validate → clean → consent → tokenize → minimize → seal → commit, for a whole batch in one transaction.
    ///
    /// The transaction runs on the database's writer queue while the request's task is suspended: a blocking write
    /// held one of the cooperative pool's two threads through the wait for the write lock and the commit,
    /// so a stream of small event batches starved every other request (cached recommendations beside single-event
    /// posts fell from about 10k to 2.4k requests/s).
    public func ingest(body: [UInt8], principal: Principal, gpcHeader: Bool, note: AuditNote) async throws -> IngestResult {
        let at = now()
        var parsed: (events: [(index: Int, event: CleanEvent)], rejected: [Rejection])
        do {
            parsed = try parser.parse(body: body, now: at)
        } catch let error as EventParser.BatchError {
            throw body.count > parser.limits.maxBytes ? CoreError.tooLarge : CoreError.invalid(error.reason)
        }
        if principal.isBrowser {
            // A page speaks for the person on it only; what they bought or who they are comes from the shop's server.
            // By bytes, as tokens are made: String equality would let a proven "café" vouch for "cafe\u{301}" too.
            for subject in Set(parsed.events.map { Array($0.event.subject.utf8) })
            where !principals.browserMayName(String(decoding: subject, as: UTF8.self), principal, at: at) {
                throw PrincipalStore.subjectProofRequired
            }
            let refused = parsed.events.filter { [.purchase, .profile].contains($0.event.kind) }
            if !refused.isEmpty {
                parsed.events.removeAll { [.purchase, .profile].contains($0.event.kind) }
                parsed.rejected += refused.map {
                    Rejection(
                        index: $0.index, reason: "a browser key cannot send \($0.event.kind.rawValue) events; send them from the shop's server",
                        source: $0.event.source)
                }
            }
        }
        let screened = screenOutliers(parsed.events)
        let rejections = (parsed.rejected + screened.rejected).sorted { $0.index < $1.index }
        note.update {
            $0.purpose = Self.personalization; $0.reason = "\(screened.kept.count) valid, \(rejections.count) rejected"
        }
        var quality: [String: SourceQualityLog.Delta] = [:]
        for r in rejections {
            quality[r.source ?? "unknown", default: .init()].events += 1
            quality[r.source ?? "unknown", default: .init()].rejected += 1
        }
        for (_, event) in parsed.events {
            quality[event.source, default: .init()].completenessSum += event.completeness
        }
        for (_, event) in screened.kept { quality[event.source, default: .init()].events += 1 }
        for (source, n) in screened.flagged { quality[source, default: .init()].outliers += n }
        let minimizer = Minimizer(policy: policy, currentYear: Calendar(identifier: .gregorian).component(.year, from: at))
        // Everything that needs no database is done before the write transaction, which batches from concurrent
        // requests take in turn: keyed hashes, minimization, search-term hashing.
        let personalizable = policy.purposes[Self.personalization]?.categories ?? []
        // Keyed by the id's bytes: String equality would merge two ids that differ only in Unicode normalization.
        var sourceTokens: [[UInt8]: SubjectToken] = [:]
        let prepared = screened.kept.map { (_, event) -> PreparedEvent in
            let bytes = Array(event.subject.utf8)
            let source = sourceTokens[bytes] ?? tokenizer.token(for: event.subject, namespace: principal.namespace)
            sourceTokens[bytes] = source
            let kept = personalizable.contains(event.kind.category) ? minimizer.minimize(event.fields, category: event.kind.category) : nil
            var terms: [Int32] = []
            if event.kind == .search, let query = kept?["query"]?.stringValue { terms = Array(termHasher.signedTerms(query).prefix(32)) }
            return PreparedEvent(
                event: event, source: source,
                delivery: deliveryKeys.keys(namespace: principal.namespace, id: event.id, content: event.contentKey),
                kept: kept, terms: terms)
        }
        struct Written: Sendable {
            var result: IngestResult
            /// Tokens whose cached lists are now stale.
            var touched: Set<String> = []
            var outcomes: [(token: String, kind: InteractionKind, item: String)] = []
        }
        // The keys this batch will seal with, created in the key store alone before the batch's transaction (see
        // SubjectKeys.ensureKeys): those of every subject with personalization consent.
        let sources = Set(sourceTokens.values)
        let owners = try await store.read { db -> [String] in
            var owners: [String] = []
            var seen = Set<SubjectToken>()
            for source in sources {
                let token = try linker.canonical(source, in: db)
                guard seen.insert(token).inserted, try ledger.decision(token: token, purpose: Self.personalization, at: at, in: db).allowed else {
                    continue
                }
                owners += [FeatureStore.keyOwner(token), IdentityMap.keyOwner(token)]
            }
            return owners
        }
        try await keys.ensureKeys(owners, in: store)
        let counted = quality
        let written = try await store.write { db -> Written in
            var quality = counted, touched = Set<String>(), outcomes: [(token: String, kind: InteractionKind, item: String)] = []
            var accepted = 0, duplicates = 0, anonymized = 0
            var gpcDone = Set<SubjectToken>()
            // Per batch: one consent lookup and one identity record per subject, not per event.
            var decisions: [SubjectToken: Bool] = [:]
            var tokens: [SubjectToken: SubjectToken] = [:]
            var anonymousCounts: [FeatureStore.AnonymousCount: Int] = [:]
            for p in prepared {
                let event = p.event, deliveryID = p.delivery.id
                let token = try tokens[p.source] ?? linker.canonical(p.source, in: db)
                tokens[p.source] = token
                // A browser with GPC on sends the header with every batch: the ledger records the signal once, not
                // again while marketing stays withdrawn.
                if try gpcHeader && !gpcDone.contains(token)
                    && ledger.decision(token: token, purpose: "marketing", at: at, in: db).reason != .withdrawn
                {
                    try ledger.recordGPC(
                        token: token, at: at, sourceApp: principal.namespace, principal: principal.name,
                        noticeVersion: policy.currentNotice, jurisdiction: ConsentLedger.unspecifiedJurisdiction, in: db)
                    gpcDone.insert(token)
                }
                guard try deliveries.firstDelivery(token: token, keys: p.delivery, at: event.timestamp, in: db) else {
                    duplicates += 1
                    quality[event.source, default: .init()].duplicates += 1
                    continue
                }
                accepted += 1
                quality[event.source, default: .init()].accepted += 1
                // Freshness is about deliveries: a backfill of old events is fresh data from a live source.
                quality[event.source, default: .init()].lastEvent = Int64(at.timeIntervalSince1970)
                for signal in event.signals { anonymousCounts[.init(item: signal.item, day: event.timestamp / 86_400), default: 0] += 1 }
                let allowed = try decisions[token] ?? ledger.decision(token: token, purpose: Self.personalization, at: at, in: db).allowed
                decisions[token] = allowed
                guard allowed, let kept = p.kept else {
                    anonymized += 1
                    continue
                }
                // Experiments and bandits learn only from subjects with personalization consent.
                for signal in event.signals { outcomes.append((token.rawValue, signal.kind, signal.item)) }
                if event.kind == .profile {
                    try features.setProfile(kept.compactMapValues { $0.stringValue }, token: token, in: db)
                }
                if !p.terms.isEmpty {
                    // Only hashed buckets of the words are kept: enough to match item text, not to read the query back.
                    try features.add(
                        StoredInteraction(
                            item: "", kind: .searchTerms, weight: 1, time: event.timestamp, terms: p.terms,
                            termWidth: Int32(termHasher.width)),
                        id: "\(deliveryID)-q", token: token, in: db)
                }
                for (n, signal) in event.signals.enumerated() {
                    try features.add(
                        StoredInteraction(item: signal.item, kind: signal.kind, weight: signal.weight, time: event.timestamp),
                        id: "\(deliveryID)-\(n)", token: token, in: db)
                }
                if !touched.contains(token.rawValue) { try identities.remember(subject: event.subject, token: token, in: db) }
                touched.insert(token.rawValue)
            }
            try features.countAnonymous(anonymousCounts, in: db)
            try sourceQuality.record(quality, day: Int64(at.timeIntervalSince1970) / 86_400, in: db)
            return Written(
                result: IngestResult(
                    accepted: accepted, duplicates: duplicates, anonymized: anonymized,
                    rejected: rejections.map { .init(index: $0.index, reason: $0.reason) }),
                touched: touched, outcomes: outcomes)
        }
        let result = written.result
        for token in written.touched { cache.drop(token: token) }
        for (token, kind, item) in written.outcomes {
            experiments.outcome(token: token, kind: kind, at: at)
            if ExperimentTracker.outcomeOfKind[kind] != nil { promotions.reward(token: token, item: item, at: at) }
        }
        await watchQuality()
        metrics.recordIngest(
            source: principal.namespace, accepted: result.accepted, rejected: result.rejected.count,
            duplicates: result.duplicates, at: at)
        return result
    }

    // MARK: - Catalog

    public func upsertItems(_ items: [CatalogItem]) async throws {
        guard !items.isEmpty, items.count <= 10_000 else { throw CoreError.invalid("send 1 to 10000 items") }
        for item in items where item.id.isEmpty || item.title.isEmpty {
            throw CoreError.invalid("every item needs an id and a title")
        }
        for item in items where item.id.utf8.count > 256 {
            throw CoreError.unprocessable("an item id is at most 256 bytes")
        }
        let at = now()
        try await store.write { try features.upsert(items, at: at, in: $0) }
        categories.withLock { known in
            guard known != nil else { return }
            for item in items { known![item.id] = item.category }
        }
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

    // MARK: - Recommendations

    public struct RecommendationQuery: Sendable {
        public var k = 10
        public var categories: [String] = []
        public var exclude: Set<String> = []
        public var session: [String] = []
        public init() {}
    }

    /// The response body of `GET /v1/recommendations/{subject}`.
    public func recommend(
        subject: String, query: RecommendationQuery, principal: Principal, requestID: String, note: AuditNote
    ) async throws -> ByteBuffer {
        let at = now()
        let source = try subjects.sourceToken(for: subject, principal: principal)
        let token: SubjectToken
        if let remembered = cache.canonical(of: source, now: at) {
            token = remembered
        } else {
            token = try await subjects.canonical(source)
            cache.remember(source: source, canonical: token, now: at)
        }
        note.update {
            $0.subjectToken = token.rawValue; $0.purpose = Self.personalization
        }
        let versions = models.versions
        guard let stableVersion = versions.stable else {
            throw CoreError(
                .unavailable, "no_model", "no model is trained yet; send events and run `veil train` or wait for the scheduled retrain")
        }
        // Experiments: the canary model for its share of subjects, and the variant settings of A/B tests.
        var variant: ExperimentSpec.Variant?
        var arms: [String] = []
        var useCanary = false
        let assignments = experiments.assignments(token: token.rawValue, at: at)
        for (experiment, v) in assignments {
            arms.append("\(experiment.name)=\(v.name)")
            if experiment.name.hasPrefix("canary:") {
                useCanary = v.name == "canary" && versions.canary != nil
            } else if variant == nil {
                variant = v
            }
        }
        func cacheKey(_ version: String) -> RecommendationCache.Key {
            .init(
                modelVersion: version, arms: arms, k: query.k, categories: query.categories, exclude: query.exclude.sorted(), session: query.session)
        }
        if let cached = cache.get(token: token.rawValue, key: cacheKey(useCanary ? versions.canary! : stableVersion), now: at) {
            metrics.cacheHits.increment()
            note.update { $0.reason = cached.auditReason + " (cached)" }
            // Experiments count only subjects whose consent the list was made under.
            if cached.consented { experiments.exposure(assignments) }
            return cached.body(requestID: requestID, subject: subject)
        }
        metrics.cacheMisses.increment()
        // Read before the snapshot below: if the subject's lists are dropped meanwhile (a withdrawal committing
        // between this read and the put), the list computed here is not cached.
        let generation = cache.generation(token: token.rawValue)
        // A miss: the model itself (a swap since the versions were read just means this list is keyed by the newer one).
        guard let stable = models.model else { throw CoreError.internal }
        let model = useCanary ? models.canary ?? stable : stable
        let campaigns = promotions.campaigns.filter { $0.window(at: at) != nil }
        let (decision, history, profile, marketing) = try await store.read {
            db -> (ConsentDecision, [StoredInteraction], [String: String]?, Bool) in
            let decision = try ledger.decision(token: token, purpose: Self.personalization, at: at, in: db)
            guard decision.allowed else { return (decision, [], nil, false) }
            let history = try features.interactions(of: token, in: db)
            // Promotions are targeted with the subject's data only under marketing consent.
            let marketing = campaigns.isEmpty ? false : try ledger.decision(token: token, purpose: "marketing", at: at, in: db).allowed
            // The profile matters for a subject without history (demographic cold start) and for targeting.
            let needProfile = marketing || history.isEmpty && query.session.isEmpty
            return (decision, history, needProfile ? try features.profile(of: token, in: db) : nil, marketing)
        }
        // The subject's behaviour segment, for segment strategies and campaign targeting (computed once).
        let segment =
            history.isEmpty
            ? nil
            : model.segmentModel?.segment(of: history, catalog: model.catalogByID, types: model.productTypes, now: Int64(at.timeIntervalSince1970))
        let offers =
            marketing ? promotionOffers(campaigns, model: model, token: token, history: history, segment: segment, profile: profile, at: at) : []
        let auditReason = decision.allowed ? "personalized" : "non-personalized: \(decision.reason.rawValue)"
        note.update { $0.reason = auditReason }
        var ranker = Ranker(model: model, variant: variant)
        ranker.promotions = offers
        ranker.segment = segment
        let ranked = ranker.rank(
            history: history, session: decision.allowed ? query.session : [], profile: history.isEmpty ? profile : nil,
            query: query, now: at)
        let rendered = RenderedRecommendation(
            RecommendationResponse(
                subject: subject, personalized: ranked.personalized, model_version: model.version,
                request_id: requestID, items: ranked.items),
            auditReason: auditReason, consented: decision.allowed)
        if decision.allowed { experiments.exposure(assignments) }
        hooks.beforeCachePut()
        cache.put(
            token: token.rawValue, key: cacheKey(model.version), value: rendered, now: at,
            validUntil: decision.expiresAt.map { Date(timeIntervalSince1970: Double($0) / 1000) }, generation: generation)
        return rendered.body(requestID: requestID, subject: subject)
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
        let result = try await ingest(body: body, principal: principal, gpcHeader: false, note: note)
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
