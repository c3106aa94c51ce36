import Audit
import Consent
import FeatureStore
import Foundation
import Serving
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
    /// The audit log, with its query index.
    public let audit: any AuditTrail
    /// Every gateway's audit log as one, on a database several gateways share (with `audit.log_name`); nil otherwise.
    public let sharedAudit: SharedAudit?
    /// This gateway's audit log's name (`audit.log_name`), if it has one.
    public let auditLogName: String?
    public let principals: PrincipalStore
    public let models = ModelRegistry()
    /// Subjects whose data is gone but who may still shape the served model's item-side parameters.
    public let unlearning = UnlearningQueue()
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
    /// Training, canaries, unlearning and provenance of the served models.
    public let training: Training
    /// Experiment reports and canary decisions.
    public let review: ExperimentReview
    /// The MovieLens 100K import (`veil import movielens`).
    public let movieLens: MovieLensImport
    /// What other gateways on a shared database announce, applied to this one's memory.
    public let clusterSync: ClusterSync
    let forgetting: Forgetting
    public let now: @Sendable () -> Date
    /// Master key rotation and the re-wrapping of every subject key.
    public let keyRotation: KeyRotation
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

    /// Only wiring: each service is built once here with what it uses, so the one place that knows them all is this
    /// initializer (it is long for that reason, not for logic).
    ///
    /// Opens the key ring, the policy, the operational database (`store`, with the backend of the caller's choice), the
    /// audit log and the principals, in that order.
    public init(
        paths: RuntimePaths, store openStore: @autoclosure () throws -> any OperationalStore, passphrase: String?, cacheTTL: TimeInterval = 30,
        cacheMaxEntries: Int = 50_000,
        cacheMaxBytes: Int = 64 << 20,
        checkpointInterval: Int64 = AuditLog.defaultCheckpointInterval,
        trainingThreads: Int = 2, rateLimits: [String: RateLimit] = RateLimiter.defaults, serving: ServingOptions = ServingOptions(),
        ingestion: IngestionSettings = IngestionSettings(), quality: QualityThresholds = QualityThresholds(),
        experiments: [ExperimentSpec] = [], canary: CanarySettings = CanarySettings(), campaigns: [Campaign] = [],
        unlearnWithin: TimeInterval = 60, rechooseWithin: TimeInterval = 3600, auditFullSync: Bool = true,
        checkpointMaxAge: Duration? = AuditLog.defaultCheckpointMaxAge, auditLogName: String? = nil,
        refusalLimits: RefusalLimits = RefusalLimits(), logger: Logger = Logger(label: "veil"),
        trainingProgress: ProgressReporter = .silent, now: @escaping @Sendable () -> Date = Date.init
    ) throws {
        self.paths = paths
        ring = try KeyRing.load(directory: paths.keysDirectory, passphrase: passphrase)
        policy = try PolicyParser.load(directory: paths.policiesDirectory)
        // Opened once the keys and the policy have loaded: a wrong passphrase or a broken policy must not create or
        // migrate a database (in a mistyped data directory, say) before it is reported.
        let store = try openStore()
        self.store = store
        keys = SubjectKeys(ring: ring, clock: now)
        tokenizer = Tokenizer(ring.fingerprinter(for: .subjectTokens))
        ledger = ConsentLedger(policy: policy)
        identities = IdentityMap(keys: keys)
        linker = IdentityLinker(fingerprinter: ring.fingerprinter(for: .identityLinking))
        features = FeatureStore(keys: keys)
        audit = try SQLiteAuditTrail(
            path: paths.auditDatabase, indexPath: paths.auditIndexDatabase, signer: ring.auditSigner, logName: auditLogName,
            checkpointInterval: checkpointInterval,
            checkpointMaxAge: checkpointMaxAge, fullSync: auditFullSync, now: now)
        self.auditLogName = auditLogName
        if let archive = store.auditArchive, let auditLogName {
            sharedAudit = SharedAudit(archive: archive, audit: audit, log: auditLogName, publicKey: ring.auditSigner.publicKey, logger: logger)
        } else {
            sharedAudit = nil
        }
        principals = PrincipalStore(store: store, ring: ring, now: now)
        cache = RecommendationCache(ttl: cacheTTL, maxEntries: cacheMaxEntries, maxBytes: cacheMaxBytes)
        rateLimiter = RateLimiter(limits: rateLimits)
        refusals = RefusalLog(limits: refusalLimits)
        storage = StorageHealth(directories: [paths.dataDirectory, (paths.auditDatabase as NSString).deletingLastPathComponent, paths.keysDirectory])
        clientFingerprinter = ring.fingerprinter(for: .clientAddress)
        provenanceFingerprinter = ring.fingerprinter(for: .modelProvenance)
        self.logger = logger
        self.now = now
        keyRotation = KeyRotation(keysDirectory: paths.keysDirectory, passphrase: passphrase, keys: keys, store: store)
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
            store: store, keys: keys, features: features, models: models, unlearning: unlearning, promotions: promotions, logger: logger, now: now)
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
            keys: keys, store: store, cache: cache, experiments: self.experiments, promotions: promotions, forgetting: forgetting, outliers: outliers,
            quality: dataQuality, metrics: metrics, now: now)
        recommendations = Recommendations(
            subjects: subjects, cache: cache, models: models, experiments: self.experiments, promotions: promotions, store: store,
            ledger: ledger, features: features, metrics: metrics, hooks: hooks, now: now)
        training = Training(
            store: store, features: features, subjects: subjects, models: models, unlearning: unlearning, cache: cache,
            experiments: self.experiments, canary: canary, serving: self.serving, trainingThreads: trainingThreads, hooks: hooks,
            provenanceFingerprinter: provenanceFingerprinter, audit: audit, metrics: metrics, logger: logger, unlearnWithin: unlearnWithin,
            rechooseWithin: rechooseWithin, sharing: store.isShared ? ModelSharing(store: store, keys: keys) : nil, progress: trainingProgress,
            now: now)
        movieLens = MovieLensImport(intake: intake, consent: consent, policy: policy, audit: audit)
        clusterSync = ClusterSync(
            store: store, cache: cache, principals: principals, keys: keys, forgetting: forgetting, models: models, logger: logger,
            retrain: { [training, logger] in
                do {
                    _ = try await training.trainOffThePool(unlessPublished: .sawEveryAnnouncement)
                } catch {
                    logger.error("retraining after missed announcements failed: \(error)")
                }
            },
            adopt: { [training, logger] in
                do {
                    _ = try await offThePool { try training.adoptPublished() }
                } catch {
                    logger.error("loading the model another gateway published failed: \(loggableReason(error))")
                }
            })
        review = ExperimentReview(
            experiments: self.experiments, canary: canary, models: models, unlearning: unlearning, cache: cache, store: store, audit: audit,
            logger: logger)
        retention = Retention(
            ledger: ledger, keys: keys, features: features, deliveries: deliveries, deliveryKeys: deliveryKeys, store: store,
            policy: policy, forgetting: forgetting, cache: cache, audit: audit, now: now)
    }
}
