import Foundation
import Hummingbird
import HummingbirdTesting
import Storage
import SQLiteStorage
import Testing
@testable import Gateway
@testable import VeilCore
@testable import Serving

@Suite struct ExperimentTests {
    @Test func assignmentIsStableBalancedAndIndependentAcrossExperiments() {
        let a = ExperimentSpec(name: "a", variants: [.init(name: "control", weight: 1), .init(name: "treatment", weight: 1)])
        let b = ExperimentSpec(name: "b", variants: [.init(name: "control", weight: 3), .init(name: "treatment", weight: 1)])
        let tokens = (0..<10_000).map { String(format: "%032x", $0 &* 2_654_435_761) }
        let inA = tokens.filter { a.variant(of: $0).name == "treatment" }.count
        let inB = tokens.filter { b.variant(of: $0).name == "treatment" }.count
        #expect((4800...5200).contains(inA), "\(inA) of 10000 in a 50% arm")
        #expect((2300...2700).contains(inB), "\(inB) of 10000 in a 25% arm")
        #expect(tokens.prefix(100).allSatisfy { a.variant(of: $0) == a.variant(of: $0) })
        // Being treated in a says nothing about b.
        let both = tokens.filter { a.variant(of: $0).name == "treatment" && b.variant(of: $0).name == "treatment" }.count
        #expect(abs(Double(both) / Double(inA) - Double(inB) / 10_000) < 0.03)
    }

    /// Exposures and clicks land in the variant of the subject; a popularity-only variant gets unpersonalized lists.
    @Test func exposuresAndOutcomesAreRecordedPerVariant() async throws {
        let spec = ExperimentSpec(
            name: "ranker", variants: [.init(name: "control", weight: 1), .init(name: "popular", weight: 1, ranker: "popularity")])
        let f = try GatewayFixture(experiments: [spec])
        try await f.app.test(.router) { client in
            try await seedShop(client, f)
            var expected: [String: (exposures: Int, clicks: Int)] = [:]
            for s in 0..<30 {
                let subject = "shopper-\(s)@example.com"
                let arm = spec.variant(of: f.token(subject).rawValue).name
                let r = try await client.call(.get, "/v1/recommendations/shopper-\(s)%40example.com?k=3", key: f.keys["recommendation-client"])
                #expect(r.json["personalized"] as? Bool == (arm == "control"))
                expected[arm, default: (0, 0)].exposures += 1
                if s % 3 == 0 {
                    let click: [String: Any] = [
                        "id": "c\(s)", "kind": "feedback", "subject": subject, "timestamp": "2026-11-20T12:00:00Z",
                        "source": "web", "item": "sku-1", "signal": "click",
                    ]
                    #expect(try await client.call(.post, "/v1/feedback", key: f.keys["app"], json: ["events": [click]]).json["accepted"] as? Int == 1)
                    expected[arm, default: (0, 0)].clicks += 1
                }
            }
            let report = try await f.service.review.experimentReport("ranker")
            #expect(report.arms.map(\.variant) == ["control", "popular"])
            for arm in report.arms {
                #expect(arm.exposures == expected[arm.variant]?.exposures)
                #expect(arm.clicks == expected[arm.variant]?.clicks)
            }
            #expect(report.arms[1].ctrP != nil && report.arms[0].ctrP == nil)
        }
    }

    func canaryRun(stableClicks: Bool, canaryClicks: Bool) async throws -> (action: String?, promoted: Bool, auditActions: [String]) {
        var settings = CanarySettings()
        settings.share = 0.5
        settings.minimumExposures = 20
        let clock = TestClock(Date(timeIntervalSince1970: 1_795_300_000))
        let f = try GatewayFixture(canary: settings, now: clock.now)
        return try await f.app.test(.router) { client in
            try await seedShop(client, f)
            let first = try #require(f.service.models.model?.version)
            clock.advance(60)
            let candidate = try f.service.training.train()
            #expect(f.service.models.model?.version == first, "a new model starts as a canary")
            #expect(f.service.models.canary?.version == candidate.version)
            let spec = try #require(f.service.experiments.canaryExperiment)
            var n = 0
            for round in 0..<4 {
                for s in 0..<30 {
                    let subject = "shopper-\(s)@example.com"
                    let r = try await client.call(.get, "/v1/recommendations/shopper-\(s)%40example.com?k=3", key: f.keys["recommendation-client"])
                    let inCanary = spec.variant(of: f.token(subject).rawValue).name == "canary"
                    #expect(r.json["model_version"] as? String == (inCanary ? candidate.version : first))
                    if inCanary ? canaryClicks : stableClicks {
                        n += 1
                        let click: [String: Any] = [
                            "id": "c\(round)-\(s)", "kind": "feedback", "subject": subject, "timestamp": "2026-11-20T12:00:00Z",
                            "source": "web", "item": "sku-\(round)", "signal": "click",
                        ]
                        _ = try await client.call(.post, "/v1/feedback", key: f.keys["app"], json: ["events": [click]])
                    }
                }
            }
            let action = try await f.service.review.evaluateCanary()
            let audit = try await client.call(.get, "/v1/audit?actor=canary", key: f.keys["compliance-officer"])
            let actions = ((audit.json["entries"] as? [[String: Any]]) ?? []).compactMap { ($0["record"] as? [String: Any])?["action"] as? String }
            return (action, f.service.models.model?.version == candidate.version, actions)
        }
    }

    @Test func aCanaryThatLosesClicksIsRolledBackAndAudited() async throws {
        let run = try await canaryRun(stableClicks: true, canaryClicks: false)
        #expect(run.action == "model:rollback")
        #expect(!run.promoted)
        #expect(run.auditActions == ["model:rollback"])
    }

    @Test func aCanaryThatHoldsUpIsPromotedAndAudited() async throws {
        let run = try await canaryRun(stableClicks: true, canaryClicks: true)
        #expect(run.action == "model:promote")
        #expect(run.promoted)
        #expect(run.auditActions == ["model:promote"])
    }
}
