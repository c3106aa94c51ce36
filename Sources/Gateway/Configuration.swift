import Audit
import Foundation
import Serving
import VeilCore
import Policy
import Ingestion
import Recommender
import Yams

/// A configuration error naming the file, the line and the fix.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let line: Int
    public let reason: String
    public var description: String { "\(file):\(line): \(reason)" }
}

/// Everything an operator can set in `veil.yaml` (see `veil.example.yaml`). Every field is optional: what is not
/// set keeps its default, and a command-line flag overrides the file. Unknown keys are errors, so a typo never
/// silently keeps a default.
public struct VeilConfiguration: Sendable, Equatable {
    public var dataDirectory: String?
    public var keysDirectory: String?
    public var policiesDirectory: String?

    public var host: String?
    public var port: Int?
    public var tlsCertificate: String?
    public var tlsKey: String?
    public var retrainInterval: Double?
    /// Seconds within which a model trained without a withdrawn or erased subject is served (default 60).
    public var unlearnWithin: Double?
    /// Seconds within which the hyperparameters of a model unlearned in place are searched again on data without
    /// the unlearned subjects (a full retrain; default 3600).
    public var rechooseWithin: Double?
    public var retentionInterval: Double?
    public var logLevel: String?
    public var headerTimeout: Double?
    public var bodyTimeout: Double?
    public var idleTimeout: Double?
    public var maxConnections: Int?

    public var cacheTTL: Double?
    public var serving = ServingOptions()
    public var rateLimits = RateLimiter.defaults
    public var quality = QualityThresholds()
    public var ingestion = IngestionSettings()
    public var experiments: [ExperimentSpec] = []
    public var canary = CanarySettings()
    public var campaigns: [Campaign] = []
    /// `full` (default): every audit commit is fsynced; `normal`: survives a killed process, not a power cut.
    public var auditSync = "full"
    /// A signed tree head once this many entries follow the last one.
    public var auditHeadEveryEntries = 100_000
    /// A signed tree head once entries have waited this many seconds for one.
    public var auditHeadMaxAgeSeconds = 30
    /// This gateway's log's name in its signed heads (`audit.log_name`): each of several gateways sharing a key names
    /// its own, so that witnesses tell their logs apart.
    public var auditLogName: String?
    /// The operational database: nil is the embedded SQLite file in the data directory; a `postgres://` URL selects
    /// PostgreSQL.
    public var databaseURL: String?
    /// PostgreSQL connections per gateway.
    public var databasePoolSize = 8
    /// The PostgreSQL role that owns the key store's schema (`storage.key_role`): the gateway's role must be a member;
    /// a role that is not (a backup's, an analyst's) reads the data and never a key.
    public var keyRole: String?
    /// PostgreSQL statements running longer are cancelled (milliseconds).
    public var databaseStatementTimeoutMs = 10_000
    /// `storage.gateways: several`: other gateways may serve the same PostgreSQL database (this one then does not
    /// claim it alone, and applies what the others announce). `one` (default): a second `veil serve` is refused.
    public var sharedDatabase = false

    public init() {}

    /// Reads and checks a configuration file.
    public static func load(path: String) throws -> VeilConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(file: path, line: 0, reason: "cannot read the configuration file; check the path (see veil.example.yaml)")
        }
        return try parse(String(decoding: data, as: UTF8.self), file: path)
    }

    public static func parse(_ text: String, file: String) throws -> VeilConfiguration {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else { return VeilConfiguration() }
            root = node
        } catch let error as YamlError {
            throw ConfigurationError(file: file, line: Self.line(of: error), reason: "not valid YAML")
        }
        var config = VeilConfiguration()
        let r = Reader(file: file)
        let top = try r.mapping(
            root, "the configuration",
            keys: [
                "data_dir", "keys", "policies", "server", "recommendations", "rate_limits", "quality", "ingestion",
                "segments", "experiments", "canary", "campaigns", "audit", "storage",
            ])
        config.dataDirectory = try top["data_dir"].map { try r.string($0, "data_dir") }
        config.keysDirectory = try top["keys"].map { try r.string($0, "keys") }
        config.policiesDirectory = try top["policies"].map { try r.string($0, "policies") }
        if let node = top["server"] { try config.readServer(node, r) }
        if let node = top["storage"] { try config.readStorage(node, r) }
        if let node = top["recommendations"] { try config.readRecommendations(node, r) }
        if let node = top["rate_limits"] { try config.readRateLimits(node, r) }
        if let node = top["quality"] { try config.readQuality(node, r) }
        if let node = top["ingestion"] { try config.readIngestion(node, r) }
        if let node = top["segments"] { try config.readSegments(node, r) }
        if let node = top["experiments"] { try config.readExperiments(node, r) }
        if let node = top["campaigns"] { try config.readCampaigns(node, r) }
        if let node = top["audit"] { try config.readAudit(node, r) }
        if let node = top["canary"] { try config.readCanary(node, r) }
        if (config.tlsCertificate == nil) != (config.tlsKey == nil) {
            throw ConfigurationError(
                file: file, line: top["server"]?.line ?? 1, reason: "server.tls_cert and server.tls_key go together: set both or neither")
        }
        return config
    }

    /// The `storage` section: a `postgres://` URL, or a mapping of `url`, `pool_size`, `statement_timeout_ms`,
    /// `gateways` and `key_role`.
    mutating func readStorage(_ node: Node, _ r: Reader) throws {
        if node.mapping == nil {
            databaseURL = try r.string(node, "storage")
        } else {
            let s = try r.mapping(node, "storage", keys: ["url", "pool_size", "statement_timeout_ms", "gateways", "key_role"])
            if let n = s["key_role"] {
                let role = try r.string(n, "storage.key_role")
                // The storage backend checks the name again; the configuration names the line.
                guard role.range(of: "^[a-z_][a-z0-9_]{0,62}$", options: .regularExpression) != nil, !role.hasPrefix("pg_") else {
                    throw r.fail(
                        n, "storage.key_role is a PostgreSQL role name: 1 to 63 lower-case letters, digits and '_', not starting with a digit")
                }
                keyRole = role
            }
            databaseURL = try s["url"].map { try r.string($0, "storage.url") }
            if let n = s["pool_size"] { databasePoolSize = try r.int(n, "storage.pool_size", 1...500) }
            if let n = s["statement_timeout_ms"] { databaseStatementTimeoutMs = try r.int(n, "storage.statement_timeout_ms", 100...3_600_000) }
            if let n = s["gateways"] {
                switch try r.string(n, "storage.gateways") {
                case "one": sharedDatabase = false
                case "several": sharedDatabase = true
                default: throw r.fail(n, "storage.gateways is one (the default) or several")
                }
            }
        }
        if let url = databaseURL, !(url.hasPrefix("postgres://") || url.hasPrefix("postgresql://")) {
            throw r.fail(node, "storage must be a postgres:// URL (leave it out for the embedded SQLite database)")
        }
    }

    /// The `server` section: address, TLS, schedules, logging, timeouts.
    mutating func readServer(_ node: Node, _ r: Reader) throws {
        let s = try r.mapping(
            node, "server",
            keys: [
                "host", "port", "tls_cert", "tls_key", "retrain_interval_s", "unlearn_within_s", "rechoose_within_s", "retention_interval_s",
                "log_level",
                "header_timeout_s", "body_timeout_s", "idle_timeout_s", "max_connections",
            ])
        self.host = try s["host"].map { try r.string($0, "server.host") }
        self.port = try s["port"].map { try r.int($0, "server.port", 0...65535) }
        self.tlsCertificate = try s["tls_cert"].map { try r.string($0, "server.tls_cert") }
        self.tlsKey = try s["tls_key"].map { try r.string($0, "server.tls_key") }
        self.retrainInterval = try s["retrain_interval_s"].map { try r.double($0, "server.retrain_interval_s", 0...) }
        self.unlearnWithin = try s["unlearn_within_s"].map { try r.double($0, "server.unlearn_within_s", 4...86_400) }
        self.rechooseWithin = try s["rechoose_within_s"].map { try r.double($0, "server.rechoose_within_s", 60...604_800) }
        self.retentionInterval = try s["retention_interval_s"].map { try r.double($0, "server.retention_interval_s", 0...) }
        self.logLevel = try s["log_level"].map {
            try r.choice($0, "server.log_level", ["trace", "debug", "info", "notice", "warning", "error", "critical"])
        }
        self.headerTimeout = try s["header_timeout_s"].map { try r.double($0, "server.header_timeout_s", ServerConfiguration.timeoutRange) }
        self.bodyTimeout = try s["body_timeout_s"].map { try r.double($0, "server.body_timeout_s", ServerConfiguration.timeoutRange) }
        self.idleTimeout = try s["idle_timeout_s"].map { try r.double($0, "server.idle_timeout_s", ServerConfiguration.timeoutRange) }
        self.maxConnections = try s["max_connections"].map { try r.int($0, "server.max_connections", ServerConfiguration.maxConnectionsRange) }
    }

    /// The `recommendations` section: cache and serving options.
    mutating func readRecommendations(_ node: Node, _ r: Reader) throws {
        let s = try r.mapping(
            node, "recommendations",
            keys: [
                "cache_ttl_s", "exclude_interacted_kinds", "minimum_segment_size", "content_hash_width", "content_similarity", "ease_max_items",
            ])
        self.cacheTTL = try s["cache_ttl_s"].map { try r.double($0, "recommendations.cache_ttl_s", 0...) }
        if let kinds = s["exclude_interacted_kinds"] {
            let known = InteractionKind.itemKinds.map(\.rawValue)
            self.serving.excludeInteractedKinds = Set(
                try r.list(kinds, "recommendations.exclude_interacted_kinds").map {
                    InteractionKind(rawValue: try r.choice($0, "an interaction kind", known))!
                })
        }
        if let n = s["minimum_segment_size"] {
            self.serving.minimumSegmentSize = try r.int(n, "recommendations.minimum_segment_size", 1...1_000_000)
        }
        if let n = s["content_hash_width"] {
            self.serving.contentHashWidth = try r.int(n, "recommendations.content_hash_width", 16...(1 << 24))
        }
        if let n = s["ease_max_items"] {
            self.serving.easeMaxItems = try r.int(n, "recommendations.ease_max_items", 1...20_000)
        }
        if let node = s["content_similarity"] {
            for (type, value) in try r.pairs(node, "recommendations.content_similarity") {
                let choice = try r.choice(value, "the similarity of '\(type)'", ContentSimilarity.allCases.map(\.rawValue))
                self.serving.contentSimilarity[type] = ContentSimilarity(rawValue: choice)
            }
        }
    }

    /// The `rate_limits` section: per role.
    mutating func readRateLimits(_ node: Node, _ r: Reader) throws {
        for (role, value) in try r.pairs(node, "rate_limits") {
            let s = try r.mapping(value, "rate_limits.\(role)", keys: ["per_second", "burst"])
            guard let rate = s["per_second"], let burst = s["burst"] else {
                throw ConfigurationError(file: r.file, line: value.line, reason: "rate_limits.\(role) needs per_second and burst")
            }
            self.rateLimits[role] = RateLimit(
                perSecond: try r.double(rate, "rate_limits.\(role).per_second", 0.001...),
                burst: try r.double(burst, "rate_limits.\(role).burst", 1...))
        }
    }

    /// The `quality` section: data-quality thresholds.
    mutating func readQuality(_ node: Node, _ r: Reader) throws {
        let s = try r.mapping(
            node, "quality", keys: ["max_staleness_s", "min_completeness", "max_reject_rate", "max_duplicate_rate", "min_events"])
        if let n = s["max_staleness_s"] { self.quality.maxStaleness = try r.double(n, "quality.max_staleness_s", 0...) }
        if let n = s["min_completeness"] { self.quality.minCompleteness = try r.double(n, "quality.min_completeness", 0...1) }
        if let n = s["max_reject_rate"] { self.quality.maxRejectRate = try r.double(n, "quality.max_reject_rate", 0...1) }
        if let n = s["max_duplicate_rate"] { self.quality.maxDuplicateRate = try r.double(n, "quality.max_duplicate_rate", 0...1) }
        if let n = s["min_events"] { self.quality.minEvents = try r.int(n, "quality.min_events", 0...Int.max) }
    }

    /// The `ingestion` section: outliers and imputation.
    mutating func readIngestion(_ node: Node, _ r: Reader) throws {
        let s = try r.mapping(
            node, "ingestion", keys: ["outliers", "outlier_method", "outlier_threshold", "imputation_neighbours", "imputation_references"])
        if let n = s["outliers"] {
            self.ingestion.outliers.action = OutlierPolicy.Action(
                rawValue: try r.choice(n, "ingestion.outliers", OutlierPolicy.Action.allCases.map(\.rawValue)))!
        }
        if let n = s["outlier_method"] {
            self.ingestion.outliers.method = OutlierPolicy.Method(
                rawValue: try r.choice(n, "ingestion.outlier_method", OutlierPolicy.Method.allCases.map(\.rawValue)))!
        }
        if let n = s["outlier_threshold"] { self.ingestion.outliers.threshold = try r.double(n, "ingestion.outlier_threshold", 0.5...100) }
        if let n = s["imputation_neighbours"] { self.serving.imputationNeighbours = try r.int(n, "ingestion.imputation_neighbours", 1...100) }
        if let n = s["imputation_references"] {
            self.serving.imputationReferences = try r.int(n, "ingestion.imputation_references", 10...1_000_000)
        }
    }

    /// The `segments` section: strategies and boost.
    mutating func readSegments(_ node: Node, _ r: Reader) throws {
        let s = try r.mapping(node, "segments", keys: ["strategies", "boost"])
        if let n = s["boost"] { self.serving.strategyBoost = Float(try r.double(n, "segments.boost", 0...10)) }
        if let strategies = s["strategies"] {
            for (name, value) in try r.pairs(strategies, "segments.strategies") {
                let choice = try r.choice(value, "the strategy of '\(name)'", SegmentStrategy.allCases.map(\.rawValue))
                self.serving.segmentStrategies[name] = SegmentStrategy(rawValue: choice)
            }
        }
    }

    /// The `experiments` section: A/B tests.
    mutating func readExperiments(_ node: Node, _ r: Reader) throws {
        var names = Set<String>()
        for (n, entry) in try r.list(node, "experiments").enumerated() {
            let what = "experiments[\(n)]"
            let e = try r.mapping(entry, what, keys: ["name", "start", "end", "variants"])
            guard let nameNode = e["name"], let variantsNode = e["variants"] else {
                throw ConfigurationError(file: r.file, line: entry.line, reason: "\(what) needs a name and variants")
            }
            let name = try r.string(nameNode, "\(what).name")
            guard !name.hasPrefix("canary:"), names.insert(name).inserted else {
                throw ConfigurationError(file: r.file, line: nameNode.line, reason: "experiment name '\(name)' is taken or reserved")
            }
            var variants: [ExperimentSpec.Variant] = []
            for (m, v) in try r.list(variantsNode, "\(what).variants").enumerated() {
                let vw = "\(what).variants[\(m)]"
                let fields = try r.mapping(v, vw, keys: ["name", "weight", "ranker", "strategy_boost"])
                guard let vn = fields["name"] else { throw ConfigurationError(file: r.file, line: v.line, reason: "\(vw) needs a name") }
                variants.append(
                    ExperimentSpec.Variant(
                        name: try r.string(vn, "\(vw).name"),
                        weight: try fields["weight"].map { try r.double($0, "\(vw).weight", 0.0001...1000) } ?? 1,
                        ranker: try fields["ranker"].map { try r.choice($0, "\(vw).ranker", ["hybrid", "popularity", "content"]) },
                        strategyBoost: try fields["strategy_boost"].map { Float(try r.double($0, "\(vw).strategy_boost", 0...10)) }))
            }
            guard variants.count >= 2, Set(variants.map(\.name)).count == variants.count else {
                throw ConfigurationError(file: r.file, line: variantsNode.line, reason: "\(what) needs at least two variants with distinct names")
            }
            func date(_ key: String) throws -> Date? { try e[key].map { try r.date($0, "\(what).\(key)") } }
            self.experiments.append(ExperimentSpec(name: name, start: try date("start"), end: try date("end"), variants: variants))
        }
    }

    /// The `campaigns` section: promotions.
    mutating func readCampaigns(_ node: Node, _ r: Reader) throws {
        var names = Set<String>()
        for (n, entry) in try r.list(node, "campaigns").enumerated() {
            let what = "campaigns[\(n)]"
            let c = try r.mapping(entry, what, keys: ["name", "items", "tags", "start", "end", "trigger", "segments", "max_boost"])
            guard let nameNode = c["name"] else { throw ConfigurationError(file: r.file, line: entry.line, reason: "\(what) needs a name") }
            let name = try r.string(nameNode, "\(what).name")
            guard names.insert(name).inserted else {
                throw ConfigurationError(file: r.file, line: nameNode.line, reason: "campaign '\(name)' appears twice")
            }
            func strings(_ key: String) throws -> Set<String> {
                Set(try c[key].map { try r.list($0, "\(what).\(key)").map { try r.string($0, "\(what).\(key)") } } ?? [])
            }
            func date(_ key: String) throws -> Date? { try c[key].map { try r.date($0, "\(what).\(key)") } }
            let campaign = Campaign(
                name: name, items: try strings("items"), tags: try strings("tags"), start: try date("start"), end: try date("end"),
                trigger: try c["trigger"].map {
                    Campaign.Trigger(rawValue: try r.choice($0, "\(what).trigger", Campaign.Trigger.allCases.map(\.rawValue)))!
                },
                segments: try strings("segments"), maxBoost: try c["max_boost"].map { Float(try r.double($0, "\(what).max_boost", 0...10)) } ?? 1)
            guard !campaign.items.isEmpty || !campaign.tags.isEmpty else {
                throw ConfigurationError(file: r.file, line: entry.line, reason: "\(what) promotes nothing: give items or tags")
            }
            guard campaign.trigger != nil || campaign.start != nil || campaign.end != nil else {
                throw ConfigurationError(file: r.file, line: entry.line, reason: "\(what) needs a trigger or a start/end")
            }
            self.campaigns.append(campaign)
        }
    }

    /// The `audit` section: sync and signed heads.
    mutating func readAudit(_ node: Node, _ r: Reader) throws {
        let s = try r.mapping(node, "audit", keys: ["sync", "head_every_entries", "head_max_age_s", "log_name"])
        if let n = s["sync"] { self.auditSync = try r.choice(n, "audit.sync", ["full", "normal"]) }
        if let n = s["head_every_entries"] { self.auditHeadEveryEntries = try r.int(n, "audit.head_every_entries", 1...100_000_000) }
        if let n = s["head_max_age_s"] { self.auditHeadMaxAgeSeconds = try r.int(n, "audit.head_max_age_s", 1...86_400) }
        if let n = s["log_name"] {
            let name = try r.string(n, "audit.log_name")
            guard HeadSigner.isValidLogName(name) else { throw r.fail(n, "audit.log_name is 1 to 32 lower-case letters, digits and '-'") }
            self.auditLogName = name
        }
    }

    /// The `canary` section: how new models are tried.
    mutating func readCanary(_ node: Node, _ r: Reader) throws {
        let s = try r.mapping(node, "canary", keys: ["share", "min_exposures", "alpha"])
        if let n = s["share"] { self.canary.share = try r.double(n, "canary.share", 0...0.5) }
        if let n = s["min_exposures"] { self.canary.minimumExposures = try r.int(n, "canary.min_exposures", 10...10_000_000) }
        if let n = s["alpha"] { self.canary.alpha = try r.double(n, "canary.alpha", 0.0001...0.5) }
    }

    static func line(of error: YamlError) -> Int {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): return mark.line
        default: return 1
        }
    }

    /// Typed reads of YAML nodes with line-precise errors.
    struct Reader {
        let file: String

        func fail(_ node: Node, _ reason: String) -> ConfigurationError { ConfigurationError(file: file, line: node.line, reason: reason) }

        func date(_ node: Node, _ what: String) throws -> Date {
            guard let t = Ingestion.Clean.timestamp(try string(node, what)) else {
                throw fail(node, "\(what) must be an ISO 8601 time such as 2026-11-27T00:00:00Z")
            }
            return Date(timeIntervalSince1970: TimeInterval(t))
        }

        func pairs(_ node: Node, _ what: String) throws -> [(String, Node)] {
            guard let mapping = node.mapping else { throw fail(node, "\(what) must be a mapping") }
            return try mapping.map { key, value in
                guard let name = key.string else { throw fail(key, "keys of \(what) must be strings") }
                return (name, value)
            }
        }

        func mapping(_ node: Node, _ what: String, keys: [String]) throws -> [String: Node] {
            var out: [String: Node] = [:]
            for (key, value) in try pairs(node, what) {
                guard keys.contains(key) else {
                    throw ConfigurationError(
                        file: file, line: value.line, reason: "unknown key '\(key)' in \(what); known keys: \(keys.joined(separator: ", "))")
                }
                out[key] = value
            }
            return out
        }

        func string(_ node: Node, _ what: String) throws -> String {
            guard node.scalar != nil, let s = node.string, !s.isEmpty else { throw fail(node, "\(what) must be a non-empty string") }
            return s
        }

        func choice(_ node: Node, _ what: String, _ allowed: [String]) throws -> String {
            let s = try string(node, what)
            guard allowed.contains(s) else { throw fail(node, "\(what) is '\(s)'; use one of: \(allowed.joined(separator: ", "))") }
            return s
        }

        func list(_ node: Node, _ what: String) throws -> [Node] {
            guard let sequence = node.sequence else { throw fail(node, "\(what) must be a list") }
            return Array(sequence)
        }

        func double(_ node: Node, _ what: String, _ range: PartialRangeFrom<Double>) throws -> Double {
            guard let s = node.string, let d = Double(s), d.isFinite, range.contains(d) else {
                throw fail(node, "\(what) must be a number of at least \(range.lowerBound)")
            }
            return d
        }

        func double(_ node: Node, _ what: String, _ range: ClosedRange<Double>) throws -> Double {
            guard let s = node.string, let d = Double(s), range.contains(d) else {
                throw fail(node, "\(what) must be a number from \(range.lowerBound) to \(range.upperBound)")
            }
            return d
        }

        func int(_ node: Node, _ what: String, _ range: ClosedRange<Int>) throws -> Int {
            guard let s = node.string, let n = Int(s), range.contains(n) else {
                throw fail(node, "\(what) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return n
        }
    }
}

extension Node {
    var line: Int { mark?.line ?? 1 }
}
