import Audit
import Foundation
import Policy
import Logging
import Recommender
import Serving
import Persistence
import Storage
import Synchronization
import Vault

/// An A/B test from the configuration file.
public struct ExperimentSpec: Sendable, Equatable {
    public struct Variant: Sendable, Equatable {
        public var name: String
        /// Share of traffic (the weights of an experiment are normalised).
        public var weight: Double
        /// `hybrid` (default), `popularity` or `content`: what ranks this variant's lists.
        public var ranker: String?
        /// Overrides the segment-strategy boost.
        public var strategyBoost: Float?

        public init(name: String, weight: Double, ranker: String? = nil, strategyBoost: Float? = nil) {
            self.name = name
            self.weight = weight
            self.ranker = ranker
            self.strategyBoost = strategyBoost
        }
    }

    public var name: String
    public var start: Date?
    public var end: Date?
    public var variants: [Variant]

    public init(name: String, start: Date? = nil, end: Date? = nil, variants: [Variant]) {
        self.name = name
        self.start = start
        self.end = end
        self.variants = variants
    }

    public func isActive(at date: Date) -> Bool { (start.map { date >= $0 } ?? true) && (end.map { date < $0 } ?? true) }

    /// The variant of a token: a hash of experiment and token mapped onto the cumulative weights. Stable for a
    /// token, independent across experiments, and needs no state.
    public func variant(of token: String) -> Variant {
        let digest = Hash.blake2b(Array("\(name)|\(token)".utf8), length: 16).prefix(8)
        let u = Double(digest.reduce(UInt64(0)) { $0 << 8 | UInt64($1) } >> 11) / Double(1 << 53)
        let total = variants.reduce(0) { $0 + $1.weight }
        var cumulative = 0.0
        for v in variants {
            cumulative += v.weight / total
            if u < cumulative { return v }
        }
        return variants[variants.count - 1]
    }
}

/// How a newly trained model is tried before it replaces the current one.
public struct CanarySettings: Sendable, Equatable {
    /// Share of subjects served by the new model; 0 swaps new models in at once.
    public var share: Double = 0
    /// Exposures each arm needs before a decision.
    public var minimumExposures = 500
    /// Significance of "worse" for a rollback (one-sided on the click-through rate).
    public var alpha = 0.05
    public init() {}
}

/// What an experiment counts per variant: responses served (exposures) and the outcomes that followed them.
public enum ExperimentMetric: String, Sendable, CaseIterable {
    case exposure
    case click
    case addToCart = "add_to_cart"
    case purchase
}

extension Dictionary where Key == String, Value == Int {
    /// A variant's count of `metric` (0 when none was counted).
    subscript(metric metric: ExperimentMetric) -> Int { self[metric.rawValue] ?? 0 }
}

/// Counts exposures and outcomes per experiment and variant. Counters are kept in memory and flushed to the
/// database every few seconds and at shutdown (`experiment_counts`: aggregates only, no tokens).
public final class ExperimentTracker: Sendable {
    /// Outcome metrics counted from events: click, add_to_cart, purchase.
    public static let outcomeOfKind: [InteractionKind: ExperimentMetric] = [
        .click: .click, .searchClick: .click, .addToCart: .addToCart, .purchase: .purchase,
    ]

    public let experiments: [ExperimentSpec]
    private let pending = Mutex<[String: Int]>([:])
    private let canary = Mutex<ExperimentSpec?>(nil)

    public init(experiments: [ExperimentSpec]) { self.experiments = experiments }

    /// Every experiment running at `date` (the canary's included), with the variant of `token` in each.
    public func assignments(token: String, at date: Date) -> [(experiment: ExperimentSpec, variant: ExperimentSpec.Variant)] {
        (experiments + [canary.withLock { $0 }].compactMap { $0 }).filter { $0.isActive(at: date) }.map { ($0, $0.variant(of: token)) }
    }

    func setCanary(_ spec: ExperimentSpec?) { canary.withLock { $0 = spec } }
    var canaryExperiment: ExperimentSpec? { canary.withLock { $0 } }

    func count(_ experiment: String, _ variant: String, _ metric: ExperimentMetric, by n: Int = 1) {
        pending.withLock { $0["\(experiment)\u{1}\(variant)\u{1}\(metric.rawValue)", default: 0] += n }
    }

    /// One response served to a subject with these assignments.
    public func exposure(_ assignments: [(experiment: ExperimentSpec, variant: ExperimentSpec.Variant)]) {
        for (e, v) in assignments { count(e.name, v.name, .exposure) }
    }

    public func outcome(token: String, kind: InteractionKind, at date: Date) {
        guard let metric = Self.outcomeOfKind[kind] else { return }
        for (e, v) in assignments(token: token, at: date) { count(e.name, v.name, metric) }
    }

    /// Writes the pending counters.
    public func flush(to store: any OperationalStore) async throws {
        let deltas = pending.withLock { p -> [String: Int] in
            defer { p.removeAll() }
            return p
        }
        guard !deltas.isEmpty else { return }
        try await store.write { tx in
            for (key, n) in deltas {
                let parts = key.split(separator: "\u{1}", omittingEmptySubsequences: false).map(String.init)
                try tx.addExperimentCount(experiment: parts[0], variant: parts[1], metric: parts[2], count: n)
            }
        }
    }

    /// Stored counts of one experiment: variant → metric → count.
    public static func counts(_ experiment: String, in store: any OperationalStore) async throws -> [String: [String: Int]] {
        var out: [String: [String: Int]] = [:]
        for row in try await store.read({ try $0.experimentCounts(experiment: experiment) }) {
            out[row.variant, default: [:]][row.metric] = row.count
        }
        return out
    }
}

/// The report of `veil experiments report NAME`.
public struct ExperimentReport: Sendable, Codable, Equatable {
    public struct Arm: Sendable, Codable, Equatable {
        public var variant: String
        public var exposures: Int
        public var clicks: Int
        public var addToCart: Int
        public var purchases: Int
        public var ctr: Double
        public var ctrInterval: [Double]
        public var conversion: Double
        public var conversionInterval: [Double]
        /// Against the first (control) variant: z statistic and two-sided p-value of CTR and of conversion.
        public var ctrZ: Double?
        public var ctrP: Double?
        public var conversionP: Double?
    }

    public var experiment: String
    public var arms: [Arm]

    public init(experiment: String, counts: [String: [String: Int]], order: [String]) {
        self.experiment = experiment
        let names = order.filter { counts[$0] != nil } + counts.keys.filter { !order.contains($0) }.sorted()
        var arms: [Arm] = []
        for name in names {
            let c = counts[name] ?? [:]
            let n = c[metric: .exposure], clicks = c[metric: .click], purchases = c[metric: .purchase]
            let ctr = Proportions.wilson(successes: min(clicks, n), trials: n), conv = Proportions.wilson(successes: min(purchases, n), trials: n)
            var arm = Arm(
                variant: name, exposures: n, clicks: clicks, addToCart: c[metric: .addToCart], purchases: purchases,
                ctr: n > 0 ? Double(clicks) / Double(n) : 0, ctrInterval: [ctr.lowerBound, ctr.upperBound],
                conversion: n > 0 ? Double(purchases) / Double(n) : 0, conversionInterval: [conv.lowerBound, conv.upperBound])
            if let control = arms.first {
                let t = Proportions.zTest(
                    successesA: min(control.clicks, control.exposures), trialsA: control.exposures, successesB: min(clicks, n), trialsB: n)
                arm.ctrZ = t.z
                arm.ctrP = t.p
                arm.conversionP =
                    Proportions.zTest(
                        successesA: min(control.purchases, control.exposures), trialsA: control.exposures,
                        successesB: min(purchases, n), trialsB: n
                    ).p
            }
            arms.append(arm)
        }
        self.arms = arms
    }
}

/// A/B tests and canaries judged on their counters: the report of an experiment, and a canary model promoted or
/// rolled back once both arms have enough exposures.
public final class ExperimentReview: Sendable {
    let experiments: ExperimentTracker
    let canary: CanarySettings
    let models: ModelRegistry
    let unlearning: UnlearningQueue
    let cache: RecommendationCache
    let store: any OperationalStore
    let audit: any AuditTrail
    let logger: Logger

    init(
        experiments: ExperimentTracker, canary: CanarySettings, models: ModelRegistry, unlearning: UnlearningQueue, cache: RecommendationCache,
        store: any OperationalStore, audit: any AuditTrail, logger: Logger
    ) {
        self.experiments = experiments
        self.canary = canary
        self.models = models
        self.unlearning = unlearning
        self.cache = cache
        self.store = store
        self.audit = audit
        self.logger = logger
    }

    public func experimentReport(_ name: String) async throws -> ExperimentReport {
        try await experiments.flush(to: store)
        let order = experiments.experiments.first { $0.name == name }?.variants.map(\.name) ?? ["stable", "canary"]
        return ExperimentReport(experiment: name, counts: try await ExperimentTracker.counts(name, in: store), order: order)
    }

    /// Decides a running canary once both arms have enough exposures: rolled back when its click-through rate is
    /// significantly worse (one-sided, at `alpha`), promoted otherwise. Both outcomes are audited.
    @discardableResult
    public func evaluateCanary() async throws -> String? {
        guard let spec = experiments.canaryExperiment, let candidate = models.canary else { return nil }
        try await experiments.flush(to: store)
        let counts = try await ExperimentTracker.counts(spec.name, in: store)
        let stable = counts["stable"] ?? [:], trial = counts["canary"] ?? [:]
        let (ns, nc) = (stable[metric: .exposure], trial[metric: .exposure])
        guard ns >= canary.minimumExposures, nc >= canary.minimumExposures else { return nil }
        let (cs, cc) = (min(stable[metric: .click], ns), min(trial[metric: .click], nc))
        let test = Proportions.zTest(successesA: cs, trialsA: ns, successesB: cc, trialsB: nc)
        // One-sided: worse means a negative z whose one-sided p-value (half the two-sided one) is below alpha.
        let worse = test.z < 0 && test.p / 2 < canary.alpha
        let detail = String(
            format: "CTR stable %.4f (%d/%d), canary %.4f (%d/%d), z %.2f, one-sided p %.4f", Double(cs) / Double(ns), cs, ns,
            Double(cc) / Double(nc), cc, nc, test.z, test.p / 2)
        if worse {
            models.dropCanary()
        } else {
            // Not while subjects await unlearning (the candidate may hold them), and only the candidate still on
            // trial: an unlearning retrain may have replaced both models meanwhile.
            guard unlearning.pendingCount == 0, models.promoteCanary(version: candidate.version) else { return nil }
        }
        experiments.setCanary(nil)
        cache.clear()
        let action = (worse ? SystemAction.modelRollback : .modelPromote).rawValue
        try await audit.append(
            AuditRecord(
                actor: "canary", role: Role.system, action: action, resource: "model \(candidate.version)",
                outcome: worse ? .rolledBack : .promoted, reason: detail))
        logger.notice("canary decided", metadata: ["action": "\(action)", "model_version": "\(candidate.version)"])
        return action
    }
}
