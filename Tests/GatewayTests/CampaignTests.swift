import Foundation
import Policy
import GRDB
import SQLiteStorage
import Storage
import Hummingbird
import HummingbirdTesting
import Testing
@testable import Gateway
@testable import VeilCore
@testable import Serving

@Suite struct CampaignTests {
    @Test func namedTriggersResolvePerYear() {
        let f = ISO8601DateFormatter()
        #expect(Campaign.Trigger.blackFriday.range(year: 2026).lowerBound == f.date(from: "2026-11-27T00:00:00Z"))
        #expect(Campaign.Trigger.blackFriday.range(year: 2025).lowerBound == f.date(from: "2025-11-28T00:00:00Z"))
        #expect(Campaign.Trigger.cyberMonday.range(year: 2026).lowerBound == f.date(from: "2026-11-30T00:00:00Z"))
        let campaign = Campaign(name: "bf", tags: ["clearance"], trigger: .blackFriday)
        #expect(campaign.window(at: f.date(from: "2026-11-27T15:00:00Z")!) != nil)
        #expect(campaign.window(at: f.date(from: "2026-11-28T15:00:00Z")!) == nil)
        let context = PromotionContext(
            at: f.date(from: "2026-11-27T20:00:00Z")!, window: Campaign.Trigger.blackFriday.range(year: 2026),
            device: "mobile", segment: 2)
        #expect(context.holiday && context.evening && !context.weekend)
        #expect(abs(context.campaignProgress - 20.0 / 24) < 1e-9)
        #expect(context.vector.count == 8 + PromotionContext.segmentSlots)
    }

    /// Issue #22: exposures awaiting a reward name the subject's token; a marketing withdrawal, a GPC signal or an
    /// erasure removes them before the call returns.
    @Test func aWithdrawalOrAnErasureForgetsTheBanditsExposuresOfTheSubject() async throws {
        let campaign = Campaign(name: "launch", items: ["sku-9", "sku-19"], start: Date(timeIntervalSince1970: 0), maxBoost: 3)
        let f = try GatewayFixture(cacheTTL: 0, campaigns: [campaign])
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 12)
            let subjects = (0..<3).map { "shopper-\($0)@example.com" }
            for subject in subjects {
                #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent(subject, "marketing")).status == 201)
                let path = subject.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
                #expect(try await client.call(.get, "/v1/recommendations/\(path)?k=4", key: f.keys["recommendation-client"]).status == 200)
                #expect(f.service.promotions.pendingExposures(of: f.token(subject).rawValue) == 1, "\(subject) has an exposure awaiting its reward")
            }
            #expect(
                try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent(subjects[0], "marketing", granted: false)).status
                    == 201)
            var gpc = consent(subjects[1])
            gpc["purpose"] = nil
            gpc["granted"] = nil
            #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: gpc, headers: ["Sec-GPC": "1"]).status == 201)
            #expect(try await client.call(.post, "/v1/subjects/shopper-2%40example.com/erase", key: f.keys["compliance-officer"]).status == 200)
            for subject in subjects {
                #expect(f.service.promotions.pendingExposures(of: f.token(subject).rawValue) == 0, "\(subject)'s exposure outlived its withdrawal")
            }
        }
    }

    /// Promotions use the subject's data only with marketing consent; the bandit learns that stronger boosts earn
    /// clicks on promoted items and shifts its choices there.
    @Test func promotionsNeedMarketingConsentAndTheBanditLearnsFromClicks() async throws {
        let campaign = Campaign(name: "launch", items: ["sku-9", "sku-19"], start: Date(timeIntervalSince1970: 0), maxBoost: 3)
        // Clicked items may be shown again, so that every round is the same decision problem.
        var serving = ServingOptions()
        serving.excludeInteractedKinds = [.purchase]
        let f = try GatewayFixture(cacheTTL: 0, serving: serving, campaigns: [campaign])
        try await f.app.test(.router) { client in
            try await seedShop(client, f)
            for s in 0..<20 {
                #expect(
                    try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("shopper-\(s)@example.com", "marketing")).status
                        == 201)
            }
            var promotedShown = 0, clicks = 0
            for round in 0..<12 {
                for s in 0..<30 {
                    let r = try await client.call(.get, "/v1/recommendations/shopper-\(s)%40example.com?k=4", key: f.keys["recommendation-client"])
                    let items = (r.json["items"] as? [[String: Any]]) ?? []
                    let promoted = items.filter { $0["reason"] as? String == "promoted" }
                    if s >= 20 { #expect(promoted.isEmpty, "no marketing consent, no targeted promotion") }
                    guard let item = promoted.first?["item"] as? String else { continue }
                    promotedShown += 1
                    #expect(promoted.first?["explanation"] as? String == "On promotion: launch")
                    let click: [String: Any] = [
                        "id": "c\(round)-\(s)", "kind": "feedback", "subject": "shopper-\(s)@example.com",
                        "timestamp": String(format: "2026-11-20T12:%02d:00Z", round * 5), "source": "web", "item": item, "signal": "click",
                    ]
                    #expect(try await client.call(.post, "/v1/feedback", key: f.keys["app"], json: ["events": [click]]).json["accepted"] as? Int == 1)
                    clicks += 1
                }
            }
            #expect(promotedShown > 0)
            let pulls = f.service.promotions.pulls("launch")
            #expect(pulls.reduce(0, +) == 12 * 20, "one decision per request of a marketing-consenting subject")
            // Boosts too weak to put a promoted item in the list earn nothing; the bandit learns to avoid them.
            #expect(pulls[2] + pulls[3] + pulls[4] > 3 * (pulls[0] + pulls[1]), "pulls per level \(pulls)")
        }
    }

    /// What the bandits learnt is saved when the server shuts down and restored by the next start; a saved bandit
    /// that no longer fits (another shape of state) starts cold instead of failing the start.
    @Test(sqliteOnly) func banditsSurviveARestart() async throws {
        let campaign = Campaign(name: "launch", items: ["sku-9"], start: Date(timeIntervalSince1970: 0), maxBoost: 3)
        let f = try GatewayFixture(campaigns: [campaign])
        let at = Date(timeIntervalSince1970: 1_795_000_000)
        let context = PromotionContext(at: at, window: campaign.window(at: at)!, device: "mobile", segment: 1)
        var config = ServerConfiguration()
        config.port = 0
        config.retrainInterval = 0
        config.retentionInterval = 0
        try await GatewayServer.application(service: f.service, configuration: config).test(.live) { _ in
            for i in 0..<40 {
                _ = f.service.promotions.choose(campaign: campaign, context: context, token: "t\(i)", items: ["sku-9"], at: at)
                if i % 3 == 0 { f.service.promotions.reward(token: "t\(i)", item: "sku-9", at: at) }
            }
        }
        let learnt = f.service.promotions.pulls("launch")
        #expect(learnt.reduce(0, +) == 40)

        // A new service on the same files, as after a restart.
        let restarted = try VeilService(paths: f.service.paths, passphrase: nil, campaigns: [campaign])
        #expect(restarted.promotions.pulls("launch") == learnt)
        #expect(restarted.promotions.discarded.isEmpty)
        #expect(
            restarted.promotions.choose(campaign: campaign, context: context, token: "u", items: ["sku-9"], at: at)
                == f.service.promotions.choose(campaign: campaign, context: context, token: "u", items: ["sku-9"], at: at))

        let broken = try JSONSerialization.data(withJSONObject: [
            "arms": 2, "dimension": 3, "alpha": 0.5, "inverse": [[1.0]], "b": [[0.0]], "pulls": [7, 7],
        ])
        try await f.service.sqlite.pool.write { db in
            try db.execute(sql: "UPDATE promotion_bandits SET state = ? WHERE campaign = 'launch'", arguments: [broken])
        }
        let other = Campaign(name: "spring", tags: ["new"], start: Date(timeIntervalSince1970: 0))
        let cold = try PromotionBandits(campaigns: [campaign, other], store: f.service.store)
        #expect(cold.discarded == ["launch"])
        #expect(cold.pulls("launch") == [0, 0, 0, 0, 0])
        #expect(cold.pulls("spring") == [0, 0, 0, 0, 0])
    }
}

@Suite struct CampaignTargetingTests {
    /// A campaign for bargain hunters decides (and may boost) only for subjects whose behaviour is in that segment.
    @Test func aCampaignReachesOnlyItsTargetSegment() async throws {
        let campaign = Campaign(name: "rack", tags: ["clearance"], start: Date(timeIntervalSince1970: 0), segments: ["bargain hunters"], maxBoost: 2)
        let f = try GatewayFixture(cacheTTL: 0, campaigns: [campaign])
        try await f.app.test(.router) { client in
            try await seedTiers(client, f)
            for s in 0..<4 {
                #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("tier-\(s)", "marketing")).status == 201)
                #expect(try await client.call(.get, "/v1/recommendations/tier-\(s)?k=5", key: f.keys["recommendation-client"]).status == 200)
            }
            // tier-0 and tier-2 buy from the clearance rack; tier-1 and tier-3 from the top shelf.
            #expect(f.service.promotions.pulls("rack").reduce(0, +) == 2)
        }
    }
}
