import Foundation
import VeilCore
import Gateway
import Hummingbird
import HummingbirdTesting
import Ingestion
import Logging
import Synchronization
import Testing

/// Keeps every log message, to check what an operator would see.
final class LogCapture: Sendable {
    let messages = Mutex<[(Logger.Level, String, String)]>([])

    var logger: Logger {
        var logger = Logger(label: "capture") { _ in Handler(capture: self) }
        logger.logLevel = .info
        return logger
    }

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let rendered = (event.metadata ?? [:]).map { "\($0)=\($1)" }.sorted().joined(separator: " ")
            capture.messages.withLock { $0.append((event.level, "\(event.message)", rendered)) }
        }
    }
}

func view(_ id: String, _ subject: String, _ item: String, source: String = "web", dwell: Double = 5000) -> [String: Any] {
    [
        "id": id, "kind": "page_view", "subject": subject, "timestamp": "2026-11-20T10:00:00Z", "source": source, "item": item,
        "dwell_ms": dwell, "scroll_depth": 0.5, "device": "iPhone", "referrer": "direct",
    ]
}

@Suite struct DataQualityTests {
    @Test func aSourceCrossingAThresholdTurnsReadinessRedAndLogsAWarning() async throws {
        var thresholds = QualityThresholds()
        thresholds.minEvents = 10
        thresholds.maxRejectRate = 0.2
        let capture = LogCapture()
        let clock = TestClock(Date(timeIntervalSince1970: 1_795_200_000))
        let f = try GatewayFixture(quality: thresholds, logger: capture.logger, now: clock.now)
        try await f.app.test(.router) { client in
            let good = (0..<20).map { view("w\($0)", "s\($0)", "sku-1") }
            #expect(try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": good]).json["accepted"] as? Int == 20)
            #expect(try await client.call(.get, "/health/ready", key: nil).status == 200)
            // The kiosk sends 8 events without an item and 4 good ones: a 67% reject rate.
            let bad = (0..<8).map { n -> [String: Any] in
                var e = view("k\(n)", "s\(n)", "x", source: "kiosk"); e["item"] = nil; return e
            }
            let mixed = bad + (0..<4).map { view("kg\($0)", "s\($0)", "sku-2", source: "kiosk") }
            clock.advance(2)
            let r = try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": mixed])
            #expect((r.json["rejected"] as? [[String: Any]])?.count == 8)
            let ready = try await client.call(.get, "/health/ready", key: nil)
            #expect(ready.status == 503)
            let error = try #require(ready.json["error"] as? [String: Any])
            #expect(error["code"] as? String == "not_ready")
            #expect((error["message"] as? String)?.contains("data quality: 1 source(s)") == true)
            let report = try await f.service.dataQuality.report()
            let kiosk = try #require(report.sources.first { $0.source == "kiosk" })
            #expect(kiosk.events == 12)
            #expect(abs(kiosk.rejectRate - 8.0 / 12) < 1e-9)
            #expect(kiosk.problems == ["reject rate 66.7% above 20.0%"])
            #expect(report.sources.first { $0.source == "web" }?.problems == [])
            let metrics = try await client.call(.get, "/metrics", key: nil).body
            #expect(metrics.contains("veil_source_healthy{source=\"kiosk\"} 0"))
            #expect(metrics.contains("veil_source_reject_ratio{source=\"kiosk\"} 0.666"))
            let warnings = capture.messages.withLock { $0 }.filter { $0.0 == .warning && $0.1 == "data quality threshold crossed" }
            #expect(warnings.count == 1)
            #expect(warnings.first?.2.contains("source=kiosk") == true)
            // Staleness: a week without events from either source.
            clock.advance(8 * 86_400)
            let stale = try await f.service.dataQuality.report()
            #expect(stale.sources.allSatisfy { $0.problems.contains { $0.hasPrefix("stale: last event") } })
        }
    }

    @Test func completenessAndDuplicatesAreCountedPerSource() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            var sparse = view("a1", "s1", "sku-1", source: "app")
            for key in ["dwell_ms", "scroll_depth", "device", "referrer"] { sparse[key] = nil }
            let events = [view("a0", "s1", "sku-1", source: "app"), sparse]
            _ = try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": events])
            _ = try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": events])
            let app = try #require(try await f.service.dataQuality.report().sources.first { $0.source == "app" })
            #expect(app.events == 4)
            #expect(app.duplicateRate == 0.5)
            #expect(app.completeness == 0.5)
        }
    }

    /// Dwell times are judged against their own item category; the configured action is applied and counted.
    @Test func outliersAreCappedOrExcludedAsConfigured() async throws {
        for action in [OutlierPolicy.Action.cap, .exclude] {
            var settings = IngestionSettings()
            settings.outliers.action = action
            let f = try GatewayFixture(ingestion: settings)
            try await f.app.test(.router) { client in
                let items: [[String: Any]] = [["id": "apple", "title": "Apple", "category": "grocery/fruit", "available": true]]
                #expect(try await client.call(.put, "/v1/items", key: f.keys["app"], json: ["items": items]).status == 200)
                let normal = (0..<60).map { view("n\($0)", "s\($0)", "apple", dwell: Double(3000 + ($0 % 7) * 500)) }
                #expect(try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": normal]).json["accepted"] as? Int == 60)
                let r = try await client.call(
                    .post, "/v1/events", key: f.keys["app"], json: ["events": [view("o1", "s1", "apple", dwell: 25 * 60_000)]])
                let rejected = r.json["rejected"] as? [[String: Any]] ?? []
                if action == .exclude {
                    #expect(r.status == 422)
                    #expect(
                        (rejected.first?["reason"] as? String)?.hasPrefix("excluded as an outlier: dwell_ms 1500000.0 is an outlier for its category")
                            == true)
                } else {
                    #expect(r.json["accepted"] as? Int == 1)
                    #expect(rejected.isEmpty)
                }
                let web = try #require(try await f.service.dataQuality.report().sources.first { $0.source == "web" })
                #expect(web.outliers == 1)
                let metrics = try await client.call(.get, "/metrics", key: nil).body
                #expect(metrics.contains("veil_outliers_total{field=\"dwell_ms\",action=\"\(action.rawValue)\"} 1"))
            }
        }
    }
}
