import Audit
import Dispatch
import FeatureStore
import Foundation
@testable import Gateway
@testable import VeilCore
@testable import Serving
import GRDB
import SQLiteStorage
import Hummingbird
import HummingbirdTesting
import Recommender
import Storage
import Testing

/// Issue #22: after a withdrawal of personalization or an erasure, the served model has the subject unlearned within
/// the configured delay, and it equals (within float rounding) the model trained from scratch without them with the
/// same hyperparameters.
@Suite struct UnlearningTests {
    /// Every score the model gives: for a one-item history of each item, the ranker, the neighbours behind
    /// explanations and the session model; popularity, trending, the segment lists and the imputed age bands.
    func fingerprint(_ model: ServingModel, time: Int64, rankerOnly: Bool = false) -> [Float] {
        var out: [Float] = model.popularity + model.trending
        var scores = [Float](repeating: 0, count: model.ranker.itemCount)
        for item in 0..<Int32(model.items.count) {
            let context = UserContext(user: nil, items: [item], weights: [1], time: time)
            scores.withUnsafeMutableBufferPointer { model.ranker.score(context, into: $0) }
            out += scores
            if rankerOnly { continue }
            scores.withUnsafeMutableBufferPointer { model.neighbours.score(context, into: $0) }
            out += scores
            scores.withUnsafeMutableBufferPointer { model.sessionModel.score(session: [item], into: $0) }
            out += scores
        }
        if rankerOnly { return out }
        let ages = ["age=18-24", "age=25-34", "age=35-44", "age=45-54", "age=55-64", "age=65+"]
        for key in ["region=DE-BE"] + ages { out += model.segments.lookup([key])?.counts ?? [-1] }
        for (_, guess) in model.imputedAgeBands.sorted(by: { $0.key < $1.key }) {
            out += [Float(ages.firstIndex(of: "age=" + guess.value) ?? -1), guess.support]
        }
        return out
    }

    /// The model trained from scratch on what the feature store holds now, with `model`'s time and hyperparameters.
    func fromScratch(_ f: GatewayFixture, like model: ServingModel) throws -> ServingModel {
        let catalog = try f.service.store.readBlocking { try f.service.features.catalog(in: $0) }
        return ServingModel.train(
            snapshot: try f.snapshot(), catalog: catalog, threads: 1, now: try #require(model.trainedAt),
            fixing: model.hyperparameters)
    }

    /// Equal up to float rounding (EASE's downdate and item-kNN's subtraction round differently from a new sum).
    func same(_ a: [Float], _ b: [Float]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= 1e-3 }
    }

    /// Starts a retrain and returns once it has read its snapshot, held there until `proceed` is signalled.
    func heldRetrain(_ f: GatewayFixture) async -> (Task<ServingModel, any Error>, proceed: DispatchSemaphore) {
        let snapshotRead = DispatchSemaphore(value: 0), proceed = DispatchSemaphore(value: 0)
        f.service.hooks.onTrainingSnapshotRead {
            snapshotRead.signal(); proceed.wait()
        }
        let retrain = Task { try await f.service.training.trainOffThePool() }
        await withCheckedContinuation { c in
            DispatchQueue.global().async {
                snapshotRead.wait(); c.resume()
            }
        }
        f.service.hooks.onTrainingSnapshotRead(nil)
        return (retrain, proceed)
    }

    /// The anonymous counts of `after` are those of `before` less the events `token` had stored in `before`.
    func countsLostExactlyTheSubjectsEvents(_ before: TrainingSnapshot, _ after: TrainingSnapshot, token: String) throws {
        let u = try #require(before.tokens.firstIndex { $0.rawValue == token })
        var expected = before.anonymousCounts
        var events = 0
        for x in before.interactions where Int(x.user) == u {
            expected[Int(x.item)] -= 1
            events += 1
        }
        #expect(events > 0)
        #expect(after.items == before.items && after.anonymousCounts == expected)
    }

    func withdraw(_ client: some TestClientProtocol, _ f: GatewayFixture, _ subject: String) async throws {
        var body = consent(subject)
        body["granted"] = false
        #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: body).status == 201)
    }

    @Test func aWithdrawnSubjectIsUnlearnedWithinTheDelayAndTheModelEqualsOneTrainedWithoutThem() async throws {
        let clock = TestClock(Date(timeIntervalSince1970: 1_795_400_000))
        let f = try GatewayFixture(now: clock.now)
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 30)
            let withS = try #require(f.service.models.model)
            let subject = "shopper-4@example.com"
            let stored = try f.snapshot()
            try await withdraw(client, f, subject)
            let token = f.token(subject).rawValue
            // Their events leave the anonymous counts (popularity, trending) at once; a retrain cannot bring them back.
            try countsLostExactlyTheSubjectsEvents(stored, try f.snapshot(), token: token)
            // Once: a repeated withdrawal and an erasure after it take nothing more out.
            try await withdraw(client, f, subject)
            #expect(try await client.call(.post, "/v1/subjects/shopper-4%40example.com/erase", key: f.keys["compliance-officer"]).status == 200)
            try countsLostExactlyTheSubjectsEvents(stored, try f.snapshot(), token: token)
            #expect(f.service.unlearning.isPending(token))
            // Requests arriving together are batched: nothing retrains before the batch window has passed.
            #expect(try await f.service.training.unlearnIfDue() == false)
            clock.advance(16)
            #expect(try await f.service.training.unlearnIfDue())
            #expect(!f.service.unlearning.isPending(token))
            let served = try #require(f.service.models.model)
            #expect(served.version != withS.version)
            let time = Int64(clock.now().timeIntervalSince1970)
            let scratch = try fromScratch(f, like: withS)
            // S shaped the model before (the test would prove nothing otherwise), and no longer does.
            #expect(!same(fingerprint(withS, time: time), fingerprint(scratch, time: time)))
            #expect(same(fingerprint(served, time: time), fingerprint(scratch, time: time)))
            #expect(served.users == withS.users - 1 && served.hyperparameters == withS.hyperparameters)
            // The unlearning is on the record, naming the subject's token and both model versions.
            let entries = try f.service.audit.query(AuditQuery(subjectToken: token, action: "model:unlearn"))
            #expect(entries.count == 1 && entries.first?.record.resource == "model \(withS.version) -> \(served.version)", "\(entries)")
            // Unlearned in place (the hybrid's components downdated, ALS refitted), not retrained from the store.
            #expect(withS.ranker is HybridModel && entries.first?.record.reason.contains("unlearned") == true)
            // Its hyperparameters were chosen with the subject in the data: a full retrain chooses them again within
            // the configured time (an hour by default), and then the model is exactly a training without them.
            #expect(try await f.service.training.rechooseIfDue() == false)
            clock.advance(f.service.training.rechooseWithin)
            #expect(try await f.service.training.rechooseIfDue())
            #expect(try await f.service.training.rechooseIfDue() == false, "once")
            let rechosen = try #require(f.service.models.model)
            let catalog = try await f.service.store.read { try f.service.features.catalog(in: $0) }
            let searched = ServingModel.train(snapshot: try f.snapshot(), catalog: catalog, threads: 1, now: try #require(rechosen.trainedAt))
            #expect(rechosen.hyperparameters == searched.hyperparameters)
            #expect(same(fingerprint(rechosen, time: time), fingerprint(searched, time: time)))
        }
    }

    /// Before the withdrawal returns, the served model holds nothing of the subject alone: no imputed age band, no
    /// segment assignment, no ALS factors, no sessions, and neither their token nor their profile in the training
    /// data it keeps (their rows stay there, attached to nobody, until unlearning subtracts them). The ranker's
    /// scores are unchanged until then.
    @Test func beforeTheWithdrawalReturnsTheModelHoldsNothingOfTheSubjectAlone() async throws {
        let clock = TestClock(Date(timeIntervalSince1970: 1_795_400_000))
        var serving = ServingOptions()
        serving.segmentStrategies = ["premium buyers": .premium]  // fits behaviour segments
        let f = try GatewayFixture(serving: serving, now: clock.now)
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 30)
            let profiles = (0..<10).map { profileEvent("p-\($0)", "shopper-\($0)@example.com", age: 30 + $0, location: "DE-BE", device: "mobile") }
            #expect(try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": profiles]).status == 200)
            try f.service.training.train()
            let subject = "shopper-6@example.com"
            let token = f.token(subject).rawValue
            let before = try #require(f.service.models.model)
            #expect(before.segmentModel != nil)
            let training = try #require(before.training)
            let u = try #require(training.split.users.firstIndex(of: token))
            let t = training.snapshotIndex[u]
            let als = try #require((before.ranker as? HybridModel)?.components.compactMap { $0 as? ALSModel }.first)
            let f32 = als.factors
            // The subject was there to forget.
            #expect(als.userFactors[(u * f32)..<((u + 1) * f32)].contains { $0 != 0 })
            #expect(before.sessionModel.owners?.contains(Int32(u)) == true)
            #expect(before.segmentModel?.assignments[token] != nil)
            #expect(!training.snapshot.profiles[t].isEmpty)
            try await withdraw(client, f, subject)
            let after = try #require(f.service.models.model)
            #expect(after.version == before.version, "not yet unlearned")
            let kept = try #require(after.training)
            #expect(!kept.split.users.contains(token) && !kept.snapshot.tokens.contains { $0.rawValue == token })
            #expect(kept.snapshot.profiles[t].isEmpty && kept.forgotten == [u])
            #expect(after.imputedAgeBands[token] == nil && after.segmentModel?.assignments[token] == nil)
            let forgottenALS = try #require((after.ranker as? HybridModel)?.components.compactMap { $0 as? ALSModel }.first)
            #expect(forgottenALS.userFactors[(u * f32)..<((u + 1) * f32)].allSatisfy { $0 == 0 })
            #expect(after.sessionModel.owners?.contains(Int32(u)) == false)
            let time = Int64(clock.now().timeIntervalSince1970)
            #expect(fingerprint(after, time: time, rankerOnly: true) == fingerprint(before, time: time, rankerOnly: true))
            // Then unlearning removes the detached rows, and the result equals a training without the subject.
            clock.advance(16)
            #expect(try await f.service.training.unlearnIfDue())
            let served = try #require(f.service.models.model)
            #expect(served.training?.forgotten.isEmpty == true && served.users == before.users - 1)
            #expect(same(fingerprint(served, time: time), fingerprint(try fromScratch(f, like: before), time: time)))
        }
    }

    /// A retrain whose snapshot was read before the withdrawal committed installs a model that may hold the subject:
    /// the subject stays queued, and the next unlearning retrain removes them.
    @Test func aRetrainRacingAWithdrawalDoesNotClearTheSubject() async throws {
        let clock = TestClock(Date(timeIntervalSince1970: 1_795_400_000))
        let f = try GatewayFixture(now: clock.now)
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 30)
            let subject = "shopper-7@example.com"
            let token = f.token(subject).rawValue
            let (racing, proceed) = await heldRetrain(f)
            try await withdraw(client, f, subject)  // commits after the racing retrain read its snapshot
            proceed.signal()
            let raced = try await racing.value
            #expect(f.service.models.model?.version == raced.version)
            // Installed after the withdrawal returned, it holds the subject's rows but not the subject: the install
            // forgot them as the withdrawal did.
            let installed = try #require(f.service.models.model)
            #expect(raced.training?.split.users.contains(token) == true, "trained on a snapshot read before the withdrawal")
            #expect(installed.training?.split.users.contains(token) == false && installed.training?.forgotten.count == 1)
            #expect(installed.imputedAgeBands[token] == nil)
            #expect(f.service.unlearning.isPending(token), "the racing model was trained on data that still held the subject")
            clock.advance(16)
            #expect(try await f.service.training.unlearnIfDue())
            #expect(!f.service.unlearning.isPending(token))
            let time = Int64(clock.now().timeIntervalSince1970)
            let served = try #require(f.service.models.model)
            #expect(same(fingerprint(served, time: time), fingerprint(try fromScratch(f, like: raced), time: time)))
            #expect(!same(fingerprint(raced, time: time), fingerprint(served, time: time)))
        }
    }

    /// Two retrains at once (the scheduled one and an unlearning one, say) run one after the other: the older
    /// snapshot, which still held the subject, can never be installed over the newer one.
    @Test func concurrentRetrainsInstallInOrder() async throws {
        let clock = TestClock(Date(timeIntervalSince1970: 1_795_400_000))
        let f = try GatewayFixture(now: clock.now)
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 30)
            let subject = "shopper-9@example.com"
            let token = f.token(subject).rawValue
            let (first, proceed) = await heldRetrain(f)
            try await withdraw(client, f, subject)
            clock.advance(16)
            let second = Task { try await f.service.training.unlearnIfDue() }  // waits for the first to finish
            try await Task.sleep(for: .milliseconds(200))
            proceed.signal()
            let older = try await first.value
            #expect(try await second.value)
            let served = try #require(f.service.models.model)
            #expect(served.version != older.version, "the newer model is the one served")
            #expect(!f.service.unlearning.isPending(token))
            let lookup = try await client.call(.get, "/v1/model/provenance?subject=shopper-9%40example.com", key: f.keys["compliance-officer"])
            #expect((lookup.json["subject"] as? [String: Any])?["in_model"] as? Bool == false, "\(lookup.body)")
        }
    }

    /// A subject the served model never saw (an erasure of an unknown id) is settled without a retrain, so such
    /// requests cannot keep the server retraining.
    @Test func aSubjectNotInTheServedModelNeedsNoRetrain() async throws {
        let clock = TestClock(Date(timeIntervalSince1970: 1_795_400_000))
        let f = try GatewayFixture(now: clock.now)
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 10)
            let version = f.service.models.model?.version
            #expect(try await client.call(.post, "/v1/subjects/never-seen%40example.com/erase", key: f.keys["compliance-officer"]).status == 200)
            #expect(f.service.unlearning.pendingCount == 1)
            clock.advance(16)
            #expect(try await f.service.training.unlearnIfDue() == false)
            #expect(f.service.unlearning.pendingCount == 0 && f.service.models.model?.version == version)
        }
    }

    /// The compliance officer's view: how many subjects the served model was trained on, their keyed digest, and
    /// whether one subject's data is in it, before and after unlearning.
    @Test func provenanceSaysWhetherASubjectIsInTheServedModel() async throws {
        let clock = TestClock(Date(timeIntervalSince1970: 1_795_400_000))
        let f = try GatewayFixture(now: clock.now)
        try await f.app.test(.router) { client in
            let none = try await client.call(.get, "/v1/model/provenance", key: f.keys["compliance-officer"])
            #expect(none.status == 503)
            try await seedShop(client, f, subjects: 12)
            let officer = f.keys["compliance-officer"]
            let before = try await client.call(.get, "/v1/model/provenance?subject=shopper-3%40example.com", key: officer)
            #expect(before.status == 200 && before.json["subjects"] as? Int == 12, "\(before.body)")
            #expect((before.json["subject"] as? [String: Any])?["in_model"] as? Bool == true)
            #expect(!before.body.contains("shopper-3"), "the answer names no subject id")
            let stranger = try await client.call(.get, "/v1/model/provenance?subject=nobody%40example.com", key: officer)
            #expect((stranger.json["subject"] as? [String: Any])?["in_model"] as? Bool == false)
            // Withdrawn: still in the served model until the unlearning retrain, which then leaves it out.
            try await withdraw(client, f, "shopper-3@example.com")
            let waiting = try await client.call(.get, "/v1/model/provenance?subject=shopper-3%40example.com", key: officer)
            #expect((waiting.json["subject"] as? [String: Any])?["in_model"] as? Bool == true)
            #expect((waiting.json["subject"] as? [String: Any])?["awaiting_unlearning"] as? Bool == true)
            clock.advance(16)
            #expect(try await f.service.training.unlearnIfDue())
            let after = try await client.call(.get, "/v1/model/provenance?subject=shopper-3%40example.com", key: officer)
            #expect(after.json["subjects"] as? Int == 11 && after.json["model_version"] as? String != before.json["model_version"] as? String)
            #expect((after.json["subject"] as? [String: Any])?["in_model"] as? Bool == false)
            #expect(after.json["subjects_digest"] as? String != before.json["subjects_digest"] as? String)
            // The lookup is audited under the subject's token; an app may not ask.
            let lookups = try f.service.audit.query(
                AuditQuery(subjectToken: f.token("shopper-3@example.com").rawValue, action: "audit:read"))
            #expect(lookups.count == 3)
            #expect(try await client.call(.get, "/v1/model/provenance", key: f.keys["app"]).status == 403)
        }
    }

    /// With canaries on, the retrain that re-chooses the hyperparameters serves everyone at once: as a canary it would
    /// leave the model chosen with the unlearned subject serving most subjects (and for good after a rollback).
    @Test func theRechoosingRetrainIsNoCanary() async throws {
        let clock = TestClock(Date(timeIntervalSince1970: 1_795_400_000))
        var canary = CanarySettings()
        canary.share = 0.2
        let f = try GatewayFixture(canary: canary, now: clock.now)
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 30)
            try await withdraw(client, f, "shopper-8@example.com")
            clock.advance(16)
            #expect(try await f.service.training.unlearnIfDue())
            let unlearned = try #require(f.service.models.model)
            clock.advance(f.service.training.rechooseWithin)
            #expect(try await f.service.training.rechooseIfDue())
            let served = try #require(f.service.models.model)
            #expect(served.version != unlearned.version && f.service.models.canary == nil)
            #expect(try await f.service.training.rechooseIfDue() == false)
        }
    }

    /// A stored event that cannot be opened (a damaged row) holds up neither the withdrawal nor the subtraction of
    /// the subject's other events.
    @Test(sqliteOnly) func anUnreadableRowDoesNotHoldUpAWithdrawal() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 10)
            let token = f.token("shopper-5@example.com").rawValue
            let stored = try f.snapshot()
            try await f.service.sqlite.pool.write { db in
                try db.execute(
                    sql: "UPDATE interactions SET body = x'00' WHERE token = ?1 AND id = (SELECT id FROM interactions WHERE token = ?1 LIMIT 1)",
                    arguments: [token])
            }
            try await withdraw(client, f, "shopper-5@example.com")
            let after = try f.snapshot()
            let u = try #require(stored.tokens.firstIndex { $0.rawValue == token })
            let events = stored.interactions.filter { Int($0.user) == u }.count
            let total = { (s: TrainingSnapshot) in s.anonymousCounts.reduce(0, +) }
            #expect(total(stored) - total(after) == Float(events - 1))
            #expect(f.service.unlearning.isPending(token))
        }
    }

    /// An erasure is unlearned the same way; a withdrawal of marketing alone deletes no training data and queues nothing.
    @Test func erasureQueuesTheSubjectAndAMarketingWithdrawalDoesNot() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 10)
            var marketing = consent("shopper-1@example.com", "marketing")
            #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: marketing).status == 201)
            marketing["granted"] = false
            #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: marketing).status == 201)
            #expect(f.service.unlearning.pendingCount == 0)
            let stored = try f.snapshot()
            #expect(try await client.call(.post, "/v1/subjects/shopper-2%40example.com/erase", key: f.keys["compliance-officer"]).status == 200)
            #expect(f.service.unlearning.isPending(f.token("shopper-2@example.com").rawValue))
            try countsLostExactlyTheSubjectsEvents(stored, try f.snapshot(), token: f.token("shopper-2@example.com").rawValue)
        }
    }
}
