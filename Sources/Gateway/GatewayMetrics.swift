import Foundation
import Prometheus
import Synchronization

/// Prometheus metrics of the gateway, rendered at `GET /metrics`.
public final class GatewayMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let requests: Counter
    let consents: Counter
    let cacheHits: Counter
    let cacheMisses: Counter
    private let perSource = Mutex<[String: (accepted: Counter, rejected: Counter, duplicates: Counter, lastEvent: Gauge)]>([:])

    init() {
        requests = registry.makeCounter(name: "veil_requests_total", help: "HTTP requests handled")
        consents = registry.makeCounter(name: "veil_consent_changes_total", help: "Consent events recorded")
        cacheHits = registry.makeCounter(name: "veil_recommendation_cache_hits_total", help: "Recommendation cache hits")
        cacheMisses = registry.makeCounter(name: "veil_recommendation_cache_misses_total", help: "Recommendation cache misses")
    }

    func recordIngest(source: String, accepted: Int, rejected: Int, duplicates: Int, at: Date) {
        let counters = perSource.withLock { table in
            if let c = table[source] { return c }
            let labels = [("source", source)]
            let c = (registry.makeCounter(name: "veil_events_accepted_total", labels: labels, help: "Events accepted per source"),
                     registry.makeCounter(name: "veil_events_rejected_total", labels: labels, help: "Events rejected per source"),
                     registry.makeCounter(name: "veil_events_duplicate_total", labels: labels, help: "Repeated deliveries per source"),
                     registry.makeGauge(name: "veil_events_last_seconds", labels: labels, help: "Time of the last accepted event per source"))
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
            let c = registry.makeCounter(name: "veil_outliers_total", labels: [("field", field), ("action", action)], help: "Values flagged as outliers per field")
            table[field + "|" + action] = c
            return c
        }
    }

    /// Freshness, completeness, reject and duplicate rate per source, and whether it crossed a threshold.
    func recordQuality(_ report: DataQualityReport) {
        qualityGauges.withLock { table in
            for s in report.sources {
                let gauges = table[s.source] ?? {
                    let labels = [("source", s.source)]
                    return [registry.makeGauge(name: "veil_source_freshness_seconds", labels: labels, help: "Age of the last accepted event per source"),
                            registry.makeGauge(name: "veil_source_completeness_ratio", labels: labels, help: "Share of expected fields present per source"),
                            registry.makeGauge(name: "veil_source_reject_ratio", labels: labels, help: "Share of events rejected per source"),
                            registry.makeGauge(name: "veil_source_duplicate_ratio", labels: labels, help: "Share of events that were repeated deliveries per source"),
                            registry.makeGauge(name: "veil_source_healthy", labels: labels, help: "1 when no quality threshold is crossed")]
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

    public func render() -> [UInt8] { registry.emitToBuffer() }
}
