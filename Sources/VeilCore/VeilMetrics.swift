import Audit
import Foundation

import Prometheus
import Synchronization

/// Prometheus metrics of Veil, rendered at `GET /metrics`; the HTTP edge registers its own (requests, durations)
/// in the same ``registry``.
public final class VeilMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    public let consents: Counter
    let cacheHits: Counter
    let cacheMisses: Counter
    private let auditEntries: Counter
    private let auditBatches: Counter
    private let auditSyncs: Counter
    private let auditDurableWait: Counter
    /// The audit log's counts as of the last scrape: the counters above move by the difference.
    private let auditSeen = Mutex(AuditStats())
    private let trainingSeconds: Gauge
    private let trainingPeakBytes: Gauge
    private let perSource = Mutex<[String: (accepted: Counter, rejected: Counter, duplicates: Counter, lastEvent: Gauge)]>([:])

    /// `veil_<metric>_<unit>`; an empty unit leaves the suffix out.
    public static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "veil", metricName: metric, unitName: unit, helpText: help)
    }

    init() {
        let name = Self.name
        consents = registry.makeCounter(descriptor: name("consent_changes", "total", "Consent events recorded"))
        cacheHits = registry.makeCounter(descriptor: name("recommendation_cache_hits", "total", "Recommendation cache hits"))
        cacheMisses = registry.makeCounter(descriptor: name("recommendation_cache_misses", "total", "Recommendation cache misses"))
        auditEntries = registry.makeCounter(descriptor: name("audit_entries", "total", "Audit entries written by this process"))
        auditBatches = registry.makeCounter(descriptor: name("audit_batches", "total", "Audit write transactions (group commits) of this process"))
        auditSyncs = registry.makeCounter(descriptor: name("audit_syncs", "total", "WAL fsyncs that made audit entries durable"))
        trainingSeconds = registry.makeGauge(descriptor: name("training_last_duration", "seconds", "Wall time of the last full training"))
        trainingPeakBytes = registry.makeGauge(
            descriptor: name("training_last_peak_memory", "bytes", "The process's peak resident memory during the last full training"))
        auditDurableWait = registry.makeCounter(
            descriptor: name(
                "audit_durable_wait_seconds", "total",
                "Summed over audit entries: time from the append to the entry being durable (the log's own part of the audit wait)"))
    }

    func recordTraining(seconds: Double, peakBytes: Int) {
        trainingSeconds.set(seconds)
        trainingPeakBytes.set(Double(peakBytes))
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
    public func render(audit: AuditStats) -> [UInt8] {
        let delta = auditSeen.withLock { seen -> AuditStats in
            defer { seen = audit }
            return AuditStats(
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

/// The process's peak resident memory (Linux's VmHWM), which a training resets before it starts so that its own peak is
/// what is read after.
public enum ProcessMemory {
    public static func resetPeak() { try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8) }

    /// Bytes; 0 where /proc is not readable.
    public static func peak() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            // "VmHWM:\t 1234 kB": the number is padded to eight characters, so past 9.5 GiB no blank precedes it.
            let kB = line.dropFirst("VmHWM:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap({ Int($0) })
        else { return 0 }
        return kB * 1024
    }
}
