import Foundation
import VeilCore
import Gateway
import HTTPTypes
import Storage
import SQLiteStorage
import Hummingbird
import HummingbirdTesting
import Synchronization
import Testing

/// Issue #21, items 4-7, 9 and 13: what the gateway must refuse, and what a cached list may never outlive.
@Suite struct ConsentEdgeTests {
    static let officer = "compliance-officer"

    /// Item 4: one definition of a subject id on every route. Ids that a cleaning step would have reshaped are
    /// refused everywhere; ids kept byte for byte meet across events, consents, recommendations, export and erase.
    @Test func oddSubjectIdsAreRefusedEverywhereAndExactOnesMeet() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 6)
            // Each odd id with the exact problem SubjectID names (an event's rejection reason is "subject " + problem).
            let repeated = "must not start with whitespace or repeat it"
            for (odd, problem) in [
                ("jane  doe", repeated), (" jane", repeated), ("jane ", "must not end with whitespace"),
                ("jane\u{200B}doe", "must not contain invisible format characters"),
                ("jane\u{0085}doe", "must not contain control characters"), ("jane\u{00A0}\u{00A0}doe", repeated),
            ] {
                let path = odd.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
                let consent = try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent(odd))
                #expect(
                    consent.status == 422 && (consent.json["error"] as? [String: Any])?["code"] as? String == "invalid_subject",
                    "\(odd.debugDescription): \(consent.body)")
                let events = try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": [pageView("odd-\(path)", odd, "sku-1")]])
                #expect(
                    (events.json["rejected"] as? [[String: Any]])?.first?["reason"] as? String == "subject " + problem,
                    "\(odd.debugDescription): \(events.body)")
                for (method, uri, key) in [
                    (HTTPRequest.Method.get, "/v1/recommendations/\(path)", f.keys["recommendation-client"]),
                    (.get, "/v1/consents/\(path)", f.keys["app"]), (.get, "/v1/subjects/\(path)/export", f.keys[Self.officer]),
                    (.post, "/v1/subjects/\(path)/erase", f.keys[Self.officer]),
                ] {
                    let r = try await client.call(method, uri, key: key)
                    #expect(
                        r.status == 422 && (r.json["error"] as? [String: Any])?["code"] as? String == "invalid_subject",
                        "\(method) \(odd.debugDescription): \(r.status)")
                    #expect(!r.body.contains(odd), "the error echoes the id")
                }
            }
            // Kept byte for byte, so all routes meet: "a<b>c" lost its tag and "Zoë" its accent in a cleaning step.
            for exact in ["a<b>c", "Zoë Ünïcode", "jane doe"] {
                let path = exact.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
                #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent(exact)).status == 201)
                let events = try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": [pageView("x-\(path)", exact, "sku-2")]])
                #expect(events.json["accepted"] as? Int == 1)
                let export = try await client.call(.get, "/v1/subjects/\(path)/export", key: f.keys[Self.officer])
                #expect((export.json["interactions"] as? [Any])?.count == 1, "\(exact): \(export.body)")
                let erase = try await client.call(.post, "/v1/subjects/\(path)/erase", key: f.keys[Self.officer])
                #expect(erase.json["rows_deleted"] as? Int == 1, "\(exact)")
                #expect(try f.storedInteractions(exact) == 0)
            }
        }
    }

    /// Item 5: a grant without a jurisdiction is refused, naming the field; a withdrawal without one is kept.
    @Test func aGrantWithoutJurisdictionIsRefusedAndAWithdrawalIsNot() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            var grant = consent("no-law")
            grant["jurisdiction"] = nil
            let r = try await client.call(.post, "/v1/consents", key: f.keys["app"], json: grant)
            #expect(r.status == 422)
            let message = (r.json["error"] as? [String: Any])?["message"] as? String
            #expect(message?.contains("jurisdiction") == true, "\(r.body)")
            let state = try await client.call(.get, "/v1/consents/no-law", key: f.keys["app"])
            #expect(((state.json["purposes"] as? [String: Any])?["personalization"] as? [String: Any])?["allowed"] as? Bool == false)
            var withdrawal = consent("no-law", granted: false)
            withdrawal["jurisdiction"] = nil
            #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: withdrawal).status == 201)
        }
    }

    /// A GPC signal alone is recorded as a withdrawal under the jurisdiction sent: one that is no code is refused with
    /// 422 (it once reached the ledger inside the write and came back a 500), and nothing is recorded.
    @Test func aGPCSignalWithAMalformedJurisdictionIsRefusedNotAnError() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            let r = try await client.call(
                .post, "/v1/consents", key: f.keys["app"],
                json: ["subject": "gpc-odd", "notice_version": "2026-01", "gpc": true, "jurisdiction": "!!"])
            #expect(r.status == 422, "\(r.body)")
            let message = (r.json["error"] as? [String: Any])?["message"] as? String
            #expect(message?.contains("jurisdiction") == true, "\(r.body)")
            let history = try await client.call(.get, "/v1/consents/gpc-odd/history", key: f.keys["app"])
            #expect(history.status == 200 && (history.json["events"] as? [Any])?.isEmpty != false, "\(history.body)")
            let ok = try await client.call(
                .post, "/v1/consents", key: f.keys["app"],
                json: ["subject": "gpc-odd", "notice_version": "2026-01", "gpc": true, "jurisdiction": "DE"])
            #expect(ok.status == 201, "\(ok.body)")
        }
    }

    /// Item 6: a list cached under a consent that lapses before the TTL is not served past the lapse.
    @Test func aCachedListIsNeverServedPastTheConsentItWasMadeUnder() async throws {
        let clock = TestClock(Date(timeIntervalSince1970: 1_795_400_000))
        let f = try GatewayFixture(cacheTTL: 600, now: clock.now)
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 8)
            var lapsing = consent("shopper-2@example.com")
            lapsing["expires_at"] = clock.now().addingTimeInterval(60).ISO8601Format()
            #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: lapsing).status == 201)
            let uri = "/v1/recommendations/shopper-2%40example.com?k=4", key = f.keys["recommendation-client"]
            #expect(try await client.call(.get, uri, key: key).json["personalized"] as? Bool == true)
            #expect(try await client.call(.get, uri, key: key).json["personalized"] as? Bool == true)
            #expect(try await CacheTests.hitsAndMisses(client) == (1, 1))
            clock.advance(61)
            let after = try await client.call(.get, uri, key: key)
            #expect(after.json["personalized"] as? Bool == false)
            #expect(try await CacheTests.hitsAndMisses(client) == (1, 2))
        }
    }

    /// Item 7: a cache miss reads its snapshot, a withdrawal commits and drops the cache, then the miss stores its
    /// list. The interleaving is forced with a hook, not a timing loop; the next request must not be personalized.
    @Test func aMissInFlightDuringAWithdrawalDoesNotCacheItsList() async throws {
        let f = try GatewayFixture(cacheTTL: 600)
        let (reached, reachedContinuation) = AsyncStream<Void>.makeStream()
        let release = DispatchSemaphore(value: 0)
        let armed = Mutex(true)
        let waited = Mutex<DispatchTimeoutResult?>(nil)
        f.service.hooks.onBeforeCachePut {
            guard
                armed.withLock({
                    let was = $0; $0 = false; return was
                })
            else { return }
            reachedContinuation.yield()
            let result = release.wait(timeout: .now() + 300)  // only a deadlock waits this long; a starved run may need more than 30 s
            waited.withLock { $0 = result }
        }
        defer { f.service.hooks.onBeforeCachePut(nil) }
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 8)
            let uri = "/v1/recommendations/shopper-3%40example.com?k=4", key = f.keys["recommendation-client"]
            let inFlight = Task { () async throws -> (status: Int, personalized: Bool?) in
                defer { reachedContinuation.finish() }  // the request ended without reaching the hook: the wait below ends with nil
                let r = try await client.call(.get, uri, key: key)
                return (r.status, r.json["personalized"] as? Bool)
            }
            var iterator = reached.makeAsyncIterator()
            let hookReached = await iterator.next() != nil
            try #require(hookReached, "the in-flight request never reached the cache put")
            let withdrawal = try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("shopper-3@example.com", granted: false))
            #expect(withdrawal.status == 201)
            release.signal()
            let answer = try await inFlight.value
            #expect(answer.status == 200)
            #expect(answer.personalized == true, "the in-flight list was not personalized, so the race was not exercised")
            #expect(waited.withLock { $0 } == .success, "the hook timed out before the withdrawal was acknowledged")
            let next = try await client.call(.get, uri, key: key)
            #expect(next.json["personalized"] as? Bool == false, "a list made before the withdrawal was cached after it")
        }
    }

    /// Item 9: exposures and outcomes of a subject without consent reach no experiment counter.
    @Test func experimentsCountOnlySubjectsWithConsent() async throws {
        let spec = ExperimentSpec(name: "arms", variants: [.init(name: "a", weight: 1), .init(name: "b", weight: 1)])
        let f = try GatewayFixture(experiments: [spec])
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 4)
            for subject in ["no-consent-1", "no-consent-2", "shopper-1@example.com"] {
                let path = subject.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
                #expect(try await client.call(.get, "/v1/recommendations/\(path)?k=3", key: f.keys["recommendation-client"]).status == 200)
                let click: [String: Any] = [
                    "id": "c-\(path)", "kind": "feedback", "subject": subject, "timestamp": "2026-11-20T12:00:00Z",
                    "source": "web", "item": "sku-1", "signal": "click",
                ]
                #expect(try await client.call(.post, "/v1/feedback", key: f.keys["app"], json: ["events": [click]]).json["accepted"] as? Int == 1)
            }
            let report = try await f.service.review.experimentReport("arms")
            #expect(report.arms.reduce(0) { $0 + $1.exposures } == 1)
            #expect(report.arms.reduce(0) { $0 + $1.clicks } == 1)
        }
    }

    /// Item 13: 300 distinct `exclude` values for one subject stay within the cache's entry bound.
    @Test func theCacheStaysWithinItsBound() async throws {
        let f = try GatewayFixture(cacheTTL: 600, cacheMaxEntries: 50)
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 4)
            for n in 0..<300 {
                let r = try await client.call(
                    .get, "/v1/recommendations/shopper-0%40example.com?k=3&exclude=x-\(n)", key: f.keys["recommendation-client"])
                #expect(r.status == 200)
            }
            let usage = f.service.cache.usage
            #expect(usage.entries <= 50 && usage.entries >= 40, "\(usage)")
            #expect(usage.bytes > 0 && usage.bytes < 50 * 4096)
            // The newest list is still there: the bound evicts the oldest.
            _ = try await client.call(.get, "/v1/recommendations/shopper-0%40example.com?k=3&exclude=x-299", key: f.keys["recommendation-client"])
            #expect(try await CacheTests.hitsAndMisses(client).hits == 1)
        }
    }

    /// Item 14: an officer's lookup of one person's entries is itself an access to that person, and its own entry
    /// names the token it searched (never the raw id).
    @Test func aLookupBySubjectRecordsWhomItSearched() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 2)
            let lookup = try await client.call(.get, "/v1/audit?subject=shopper-1%40example.com", key: f.keys[Self.officer])
            #expect(lookup.status == 200)
            let reads = try await client.call(.get, "/v1/audit?action=audit:read", key: f.keys[Self.officer])
            let entries = try #require(reads.json["entries"] as? [[String: Any]])
            let requestID = try #require(lookup.headers[HTTPField.Name("X-Request-ID")!])
            let own = try #require(
                entries.first { (($0["record"] as? [String: Any])?["requestID"] as? String) == requestID },
                "no audit:read entry carries the lookup's request id \(requestID)")
            #expect((own["record"] as? [String: Any])?["subjectToken"] as? String == f.token("shopper-1@example.com").rawValue, "\(own)")
            #expect(!reads.body.contains("shopper-1@example.com"))
        }
    }

    /// Privacy check 9: an erasure empties the subject's cached list (as a withdrawal does) before it returns.
    @Test func anErasureEmptiesTheCachedListBeforeItReturns() async throws {
        let f = try GatewayFixture(cacheTTL: 600)
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 6)
            let uri = "/v1/recommendations/shopper-1%40example.com?k=4", key = f.keys["recommendation-client"]
            #expect(try await client.call(.get, uri, key: key).json["personalized"] as? Bool == true)
            #expect(f.service.cache.contains(token: f.token("shopper-1@example.com").rawValue))
            #expect(try await client.call(.post, "/v1/subjects/shopper-1%40example.com/erase", key: f.keys[Self.officer]).status == 200)
            #expect(!f.service.cache.contains(token: f.token("shopper-1@example.com").rawValue))
            let after = try await client.call(.get, uri, key: key)
            #expect(after.json["personalized"] as? Bool == false)
            #expect(try await CacheTests.hitsAndMisses(client).hits == 0)
        }
    }

    /// Privacy check 2: a denial is on the record with the outcome `denied` and the rule that decided it.
    @Test func aDenialIsAuditedWithTheRuleThatDecidedIt() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            let denied = try await client.call(.get, "/v1/subjects/u-1/export", key: f.keys["recommendation-client"])
            #expect(denied.status == 403)
            let entries = try await client.call(.get, "/v1/audit?outcome=denied", key: f.keys[Self.officer])
            let records = (entries.json["entries"] as? [[String: Any]] ?? []).compactMap { $0["record"] as? [String: Any] }
            let record = try #require(records.first { $0["requestID"] as? String == denied.headers[HTTPField.Name("X-Request-Id")!] })
            #expect(record["outcome"] as? String == "denied")
            #expect(record["action"] as? String == "subjects:export")
            #expect((record["reason"] as? String)?.contains("role lacks subjects:export") == true, "\(record)")
            #expect(record["role"] as? String == "recommendation-client")
        }
    }
}
