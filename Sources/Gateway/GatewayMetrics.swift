import Audit
import Foundation
import HTTPTypes
import Prometheus
import Synchronization

/// Prometheus metrics of the gateway, rendered at `GET /metrics`.
public final class GatewayMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let requests: Counter
    let consents: Counter
    let cacheHits: Counter
    let cacheMisses: Counter
    /// Per route template and method, built once so that recording takes no lock beyond the histogram's own.
    private let durations: [String: [HTTPRequest.Method: DurationHistogram]]
    private let unmatchedDuration: DurationHistogram
    /// How long each audited request waited on its audit entry (part of its duration): until the entry was durable,
    /// then until a thread was free to resume the request. `auditDurableWait` is the first part alone.
    let auditWait: DurationHistogram
    private let auditEntries: Counter
    private let auditBatches: Counter
    private let auditSyncs: Counter
    private let auditDurableWait: Counter
    /// The audit log's counts as of the last scrape: the counters above move by the difference.
    private let auditSeen = Mutex(AuditLog.Stats())
    private let perSource = Mutex<[String: (accepted: Counter, rejected: Counter, duplicates: Counter, lastEvent: Gauge)]>([:])

    static let requestBuckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]
    static let auditBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .seconds(1),
    ]

    /// `veil_<metric>_<unit>`; an empty unit leaves the suffix out.
    static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "veil", metricName: metric, unitName: unit, helpText: help)
    }

    init(routes: [RouteSpec] = RouteTable.routes) {
        let name = Self.name
        requests = registry.makeCounter(descriptor: name("requests", "total", "HTTP requests handled"))
        consents = registry.makeCounter(descriptor: name("consent_changes", "total", "Consent events recorded"))
        cacheHits = registry.makeCounter(descriptor: name("recommendation_cache_hits", "total", "Recommendation cache hits"))
        cacheMisses = registry.makeCounter(descriptor: name("recommendation_cache_misses", "total", "Recommendation cache misses"))
        let duration = name(
            "request_duration", "seconds", "Time from a request's arrival at the gateway to its response, its audit entry's wait included")
        var durations: [String: [HTTPRequest.Method: DurationHistogram]] = [:]
        for route in routes {
            durations[route.path, default: [:]][route.method] = registry.makeDurationHistogram(
                descriptor: duration, labels: [("method", route.method.rawValue), ("route", route.path)], buckets: Self.requestBuckets)
        }
        self.durations = durations
        unmatchedDuration = registry.makeDurationHistogram(
            descriptor: duration, labels: [("method", "any"), ("route", "unmatched")], buckets: Self.requestBuckets)
        auditWait = registry.makeDurationHistogram(
            descriptor: name(
                "audit_wait", "seconds", "Time an audited request waited on its audit entry: until durable, then for a thread to resume it"),
            buckets: Self.auditBuckets)
        auditEntries = registry.makeCounter(descriptor: name("audit_entries", "total", "Audit entries written by this process"))
        auditBatches = registry.makeCounter(descriptor: name("audit_batches", "total", "Audit write transactions (group commits) of this process"))
        auditSyncs = registry.makeCounter(descriptor: name("audit_syncs", "total", "WAL fsyncs that made audit entries durable"))
        auditDurableWait = registry.makeCounter(
            descriptor: name(
                "audit_durable_wait_seconds", "total",
                "Summed over audit entries: time from the append to the entry being durable (the log's own part of the audit wait)"))
    }

    /// The duration histogram of a route template (`context.endpointPath`) and method; nil paths are unmatched requests.
    func duration(path: String?, method: HTTPRequest.Method) -> DurationHistogram {
        path.flatMap { durations[$0]?[method] } ?? unmatchedDuration
    }

    func recordIngest(source: String, accepted: Int, rejected: Int, duplicates: Int, at: Date) {
        let counters = perSource.withLock { table in
            if let c = table[source] { return c }
            let labels = [("source", source)]
            let c = (
                registry.makeCounter(descriptor: Self.name("events_accepted", "total", "Events accepted per source"), labels: labels),
                registry.makeCounter(descriptor: Self.name("events_rejected", "total", "Events rejected per source"), labels: labels),
                registry.makeCounter(descriptor: Self.name("events_duplicate", "total", "Repeated deliveries per source"), labels: labels),
                registry.makeGauge(descriptor: Self.name("events_last", "seconds", "Time of the last accepted event per source"), labels: labels)
            )
            table[source] = c
            return c
        }
        counters.accepted.increment(by: Int64(accepted))
        counters.rejected.increment(by: Int64(rejected))
        counters.duplicates.increment(by: Int64(duplicates))
        if accepted > 0 { counters.lastEvent.set(at.timeIntervalSince1970) }
    }

    private let outlierCounters = Mutex<[String: Counter]>([:])
    private let qualityGauges = Mutex<[String: [Gauge]]>([:])

    func outliers(field: String, action: String) -> Counter {
        outlierCounters.withLock { table in
            if let c = table[field + "|" + action] { return c }
            let c = registry.makeCounter(
                descriptor: Self.name("outliers", "total", "Values flagged as outliers per field"), labels: [("field", field), ("action", action)])
            table[field + "|" + action] = c
            return c
        }
    }

    /// Freshness, completeness, reject and duplicate rate per source, and whether it crossed a threshold.
    func recordQuality(_ report: DataQualityReport) {
        qualityGauges.withLock { table in
            for s in report.sources {
                let gauges =
                    table[s.source]
                    ?? {
                        let labels = [("source", s.source)]
                        return [
                            registry.makeGauge(
                                descriptor: Self.name("source_freshness", "seconds", "Age of the last accepted event per source"), labels: labels),
                            registry.makeGauge(
                                descriptor: Self.name("source_completeness", "ratio", "Share of expected fields present per source"), labels: labels),
                            registry.makeGauge(
                                descriptor: Self.name("source_reject", "ratio", "Share of events rejected per source"), labels: labels),
                            registry.makeGauge(
                                descriptor: Self.name("source_duplicate", "ratio", "Share of events that were repeated deliveries per source"),
                                labels: labels),
                            registry.makeGauge(descriptor: Self.name("source_healthy", "", "1 when no quality threshold is crossed"), labels: labels),
                        ]
                    }()
                table[s.source] = gauges
                gauges[0].set(s.freshnessSeconds ?? -1.0)
                gauges[1].set(s.completeness)
                gauges[2].set(s.rejectRate)
                gauges[3].set(s.duplicateRate)
                gauges[4].set(s.problems.isEmpty ? 1.0 : 0.0)
            }
        }
    }

    /// The exposition text, with the audit log's counts brought up to date first.
    public func render(audit: AuditLog.Stats) -> [UInt8] {
        let delta = auditSeen.withLock { seen -> AuditLog.Stats in
            defer { seen = audit }
            return AuditLog.Stats(
                entries: audit.entries - seen.entries, batches: audit.batches - seen.batches, syncs: audit.syncs - seen.syncs,
                durableWaitNanos: audit.durableWaitNanos - seen.durableWaitNanos)
        }
        auditDurableWait.increment(by: Double(delta.durableWaitNanos) / 1e9)
        auditEntries.increment(by: Int64(delta.entries))
        auditBatches.increment(by: Int64(delta.batches))
        auditSyncs.increment(by: Int64(delta.syncs))
        return registry.emitToBuffer()
    }
}
