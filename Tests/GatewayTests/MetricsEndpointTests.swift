import Foundation
import VeilCore
import Gateway
import Hummingbird
import HummingbirdTesting
import Testing

/// What an operator reads on /metrics about requests and the audit log.
@Suite struct MetricsEndpointTests {
    /// The last full training's wall time and the process's peak memory during it, for capacity planning.
    @Test func theLastTrainingsDurationAndPeakMemoryAreExposed() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 12)
            let before = try await client.call(.get, "/metrics", key: nil).body
            let started = ContinuousClock.now
            _ = try f.service.training.train()
            let took = ContinuousClock.now - started
            let metrics = try await client.call(.get, "/metrics", key: nil).body
            let seconds = try #require(metricSample("veil_training_last_duration_seconds", in: metrics))
            let peak = try #require(metricSample("veil_training_last_peak_memory_bytes", in: metrics))
            #expect(seconds > 0 && seconds <= Double(took.components.seconds) + 1, "\(seconds) s for a training of \(took)")
            #expect(seconds != metricSample("veil_training_last_duration_seconds", in: before))
            // At least the test process's own resident memory, and not beyond this machine's.
            #expect(peak > 10_000_000 && peak < 64_000_000_000, "\(peak)")
        }
    }

    @Test func requestsAreTimedPerRouteAndTheAuditWaitAndGroupCommitAreCounted() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 4)  // PUT /v1/items, 4 consents, one events batch: 6 audited requests
            let seeded = try await client.call(.get, "/metrics", key: nil).body
            let recs = "/v1/recommendations/shopper-0%40example.com?k=3"
            for _ in 0..<3 { #expect(try await client.call(.get, recs, key: f.keys["recommendation-client"]).status == 200) }
            #expect(try await client.call(.get, recs, key: f.keys["app"]).status == 403)
            #expect(try await client.call(.get, "/health/live", key: nil).status == 200)
            #expect(try await client.call(.get, "/v1/nowhere", key: f.keys["admin"]).status == 404)
            let audited = 6 + 3 + 1 + 1

            let metrics = try await client.call(.get, "/metrics", key: nil).body
            func value(_ name: String) -> Double? { metricSample(name, in: metrics) }
            let route = #"{method="GET",route="/v1/recommendations/{subject}"}"#
            // Refused requests are timed with their route too: four, one of them the 403.
            #expect(value("veil_request_duration_seconds_count" + route) == 4)
            #expect(value(#"veil_request_duration_seconds_count{method="GET",route="/health/live"}"#) == 1)
            #expect(value(#"veil_request_duration_seconds_count{method="POST",route="/v1/consents"}"#) == 4)
            #expect(value(#"veil_request_duration_seconds_count{method="any",route="unmatched"}"#) == 1)
            let buckets = metrics.split(separator: "\n").filter { $0.hasPrefix("veil_request_duration_seconds_bucket" + route.dropLast()) }
            #expect(buckets.count == 15)  // 14 bounds and +Inf
            #expect(buckets.last.map { $0.hasSuffix("le=\"+Inf\"} 4") } == true)

            // Every audited request waited for its entry, and the wait is part of the request's time.
            #expect(value("veil_audit_wait_seconds_count") == Double(audited))
            let waited = try #require(value("veil_audit_wait_seconds_sum"))
            let timed = metrics.split(separator: "\n").filter {
                $0.hasPrefix("veil_request_duration_seconds_sum") && !$0.contains("/health") && !$0.contains("/metrics")
            }
            .compactMap { Double($0.split(separator: " ").last!) }.reduce(0, +)
            #expect(waited > 0 && waited <= timed)
            // The log's own part of the wait (append to durable), summed over the entries written since the first
            // scrape, all of them these requests' entries.
            let durable = try #require(value("veil_audit_durable_wait_seconds_total"))
            let durableBefore = try #require(metricSample("veil_audit_durable_wait_seconds_total", in: seeded))
            let waitedBefore = try #require(metricSample("veil_audit_wait_seconds_sum", in: seeded))
            #expect(durable > durableBefore)
            #expect(durable - durableBefore <= waited - waitedBefore)

            // Group commit as counted by the log itself: every entry of this process, in fewer or as many commits
            // and fsyncs as entries.
            let entries = try #require(value("veil_audit_entries_total"))
            #expect(entries == Double(f.auditCount))  // a fresh log: every entry is this process's
            #expect(entries >= Double(audited))
            let batches = try #require(value("veil_audit_batches_total")), syncs = try #require(value("veil_audit_syncs_total"))
            #expect(batches >= 1 && batches <= entries)
            #expect(syncs >= 1 && syncs <= batches)

            // A second scrape counts the entries written since, not all of them again.
            let again = try await client.call(.get, "/metrics", key: nil).body
            #expect(metricSample("veil_audit_entries_total", in: again) == Double(f.auditCount))
        }
    }
}
