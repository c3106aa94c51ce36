import Foundation
import Pseudonymization
import TestSupport
import Testing
@testable import Ingestion

let now = Date(timeIntervalSince1970: 1_790_000_000)

func parse(_ events: [[String: Any]]) throws -> (events: [(index: Int, event: CleanEvent)], rejected: [Rejection]) {
    try EventParser().parse(body: Array(try JSONSerialization.data(withJSONObject: ["events": events])), now: now)
}

func base(_ kind: String, _ extra: [String: Any]) -> [String: Any] {
    ["id": "e1", "kind": kind, "subject": "u-1", "timestamp": "2026-09-21T10:00:00Z", "source": "web"].merging(extra) { _, b in b }
}

@Suite struct EventKindTests {
    @Test func everyKindParsesToItsSignals() throws {
        let r = try parse([
            base("page_view", ["item": "sku-1", "dwell_ms": 12000, "scroll_depth": 0.8, "device": "iPhone", "referrer": "https://google.com"]),
            base("purchase", ["order": "o-1", "lines": [["item": "sku-2", "quantity": 2, "unit_price": 49.9, "currency": "eur"]]]),
            base("search", ["query": "Trail Shoes", "shown": ["sku-1", "sku-2"], "clicked": [["item": "sku-2", "position": 2]]]),
            base("profile", ["age": 34, "gender": "f", "location": "DE-BY", "device": "Android phone"]),
            base("feedback", ["item": "sku-3", "signal": "rating", "value": 4]),
        ])
        #expect(r.rejected.isEmpty)
        let signals = r.events.map { $0.event.signals.map(\.kind.rawValue) }
        #expect(signals == [["page_view"], ["purchase"], ["search_click"], [], ["rating"]])
        #expect(
            r.events[1].event.fields["lines"]
                == .list([.object(["item": .string("sku-2"), "quantity": .number(2), "unit_price": .number(49.9), "currency": .string("EUR")])]))
        #expect(r.events.map(\.event.completeness) == [1, 1, 1, 1, 1])
    }

    /// The content key finds a repeated delivery under a new id: equal for equal content however it is spelled,
    /// different as soon as any value differs.
    @Test func contentKeysIgnoreIdsAndSpellingButNotValues() throws {
        let view: [String: Any] = ["item": "sku-1", "dwell_ms": 12000, "scroll_depth": 0.5]
        let r = try parse([
            base("page_view", view),
            base("page_view", view).merging(["id": "e2", "dwell_ms": 12000.0, "timestamp": "2026-09-21T12:00:00+02:00"]) { _, b in b },
            base("page_view", view).merging(["dwell_ms": 12001]) { _, b in b },
            base("page_view", view).merging(["item": "sku-2"]) { _, b in b },
            base("page_view", view).merging(["subject": "u-2"]) { _, b in b },
            base(
                "purchase",
                [
                    "order": "o-1",
                    "lines": [
                        ["item": "sku-1", "quantity": 1, "unit_price": 10, "currency": "EUR"],
                        ["item": "sku-2", "quantity": 1, "unit_price": 10, "currency": "EUR"],
                    ],
                ]),
            base(
                "purchase",
                [
                    "order": "o-1",
                    "lines": [
                        ["item": "sku-2", "quantity": 1, "unit_price": 10, "currency": "EUR"],
                        ["item": "sku-1", "quantity": 1, "unit_price": 10, "currency": "EUR"],
                    ],
                ]),
        ])
        #expect(r.rejected.isEmpty)
        let keys = r.events.map(\.event.contentKey)
        #expect(keys[0] == keys[1])
        #expect(Set(keys[1...4]).count == 4)
        #expect(keys[5] != keys[6])  // line order is content
    }

    @Test func pageViewVersion1IsUpgradedAndUnknownVersionsAreRefused() throws {
        let r = try parse([
            base("page_view", ["schema_version": 1, "item": "sku-1", "dwell": 12.5]),
            base("page_view", ["schema_version": 3, "item": "sku-1"]),
        ])
        #expect(r.events.count == 1)
        #expect(r.events[0].event.fields["dwell_ms"] == .number(12_500))
        #expect(r.events[0].event.fields["dwell"] == nil)
        #expect(r.rejected == [Rejection(index: 1, reason: "unknown schema_version 3 for page_view; supported: 1...2", source: "web")])
    }

    @Test func missingFieldsWrongTypesUnknownKindsAndFutureTimesAreNamed() throws {
        let r = try parse([
            ["id": "x", "kind": "page_view", "subject": "u", "timestamp": "2026-09-21T10:00:00Z", "source": "web"],
            base("page_view", ["item": 42]),
            base("teleport", [:]),
            base("page_view", ["item": "a", "timestamp": "2030-01-01T00:00:00Z"]),
            base("page_view", ["item": "a", "scroll_depth": 1.5]),
            base("feedback", ["item": "a", "signal": "rating", "value": 9]),
        ])
        #expect(r.events.isEmpty)
        #expect(
            r.rejected.map(\.reason) == [
                "missing field 'item'", "field 'item' must be a string",
                "unknown kind 'teleport'; expected one of page_view, purchase, search, profile, feedback", "timestamp lies in the future",
                "scroll_depth must be between 0 and 1", "a rating needs a 'value' between 0 and 5",
            ])
    }

    /// A feedback signal outside the closed set is refused naming every signal there is; a batch over the byte limit is
    /// refused as a whole as too large (a 413 at the edge), a malformed one as malformed (a 400).
    @Test func unknownSignalsAndWholeBatchFailuresAreNamed() throws {
        let r = try parse([base("feedback", ["item": "a", "signal": "wink"])])
        #expect(r.rejected.map(\.reason) == ["unknown feedback signal 'wink'; expected rating, click, add_to_cart, dwell"])
        var limits = EventParser.Limits()
        limits.maxBytes = 64
        let small = EventParser(limits: limits)
        let big = Array(try JSONSerialization.data(withJSONObject: ["events": [base("page_view", ["item": "a"])]]))
        #expect(big.count > 64)
        #expect(throws: EventParser.BatchError.self) { try small.parse(body: big, now: now) }
        do {
            _ = try small.parse(body: big, now: now)
        } catch let error as EventParser.BatchError {
            #expect(error.tooLarge)
        }
        do {
            _ = try EventParser().parse(body: Array("{\"events\": [".utf8), now: now)
            Issue.record("a malformed batch parsed")
        } catch let error as EventParser.BatchError {
            #expect(!error.tooLarge && error.reason.hasPrefix("body is not valid JSON"))
        }
    }

    /// Sources show in clear in quality counters and public metrics: an e-mail address or a URL is refused, and a
    /// rejected event's bad source is counted as "invalid".
    @Test func sourcesMustBeChannelNames() throws {
        #expect(Clean.channel("web") == "web" && Clean.channel("ios-app 2.1_beta") != nil)
        for bad in ["alice@example.com", "https://shop.example/x", "", " web", String(repeating: "a", count: 65), "wéb"] {
            #expect(Clean.channel(bad) == nil, "\(bad)")
        }
        let r = try parse([base("page_view", ["item": "a", "source": "bob@example.com"])])
        #expect(r.rejected.first?.reason.hasPrefix("source must be a channel name") == true)
        #expect(r.rejected.first?.source == "invalid")
    }

    @Test func completenessCountsExpectedOptionalFields() throws {
        let r = try parse([base("page_view", ["item": "sku-1", "dwell_ms": 1000])])
        #expect(r.events[0].event.completeness == 0.25)
    }
}

@Suite struct CleaningTests {
    @Test func htmlAndControlCharactersAreStripped() {
        #expect(Clean.text("  <b>Trail</b>\u{0007} shoes\n<script>x</script> ") == "Trail shoes x")
    }

    @Test func searchTermsAreNFKCAndCaseFolded() throws {
        #expect(Clean.searchTerms("ＴＲＡＩＬ  Shoes") == "trail shoes")
        #expect(Clean.searchTerms("ﬁne STRASSE") == "fine strasse")
        let r = try parse([base("search", ["query": "<i>Ｒｕｎ</i> SHOES"])])
        #expect(r.events[0].event.fields["query"] == .string("run shoes"))
    }

    @Test func timestampsWithOffsetsAndEpochMillisecondsMeetInUTC() {
        let utc = Clean.timestamp("2026-11-20T10:00:00Z")
        #expect(utc == 1_795_168_800)
        #expect(Clean.timestamp("2026-11-20T11:30:00+01:30") == utc)
        #expect(Clean.timestamp("2026-11-20T05:00:00.250-0500") == utc)
        #expect(Clean.timestamp(JSONValue.number(1_795_168_800_000)) == utc)
        #expect(Clean.timestamp(JSONValue.bool(true)) == nil)
        #expect(Clean.timestamp("20 Nov 2026") == nil)
        #expect(Clean.timestamp("2026-02-30T00:00:00Z") == nil)
    }

    @Test func currenciesBecomeUpperCaseISOCodes() {
        #expect(Clean.currency(" eur ") == "EUR")
        #expect(Clean.currency("euro") == nil)
        #expect(Clean.currency("€") == nil)
    }
}

@Suite struct OutlierTests {
    /// Hand-computed: sorted 1…9 and 100; type-7 quartiles 3.25 and 7.75, median 5.5, MAD 2.5.
    @Test func robustStatisticsMatchAHandComputedCase() throws {
        let s = try #require(RobustStatistics([5, 1, 9, 3, 7, 2, 8, 4, 6, 100]))
        #expect(s.median == 5.5)
        #expect(s.q1 == 3.25)
        #expect(s.q3 == 7.75)
        #expect(s.mad == 2.5)
        #expect(s.fences(.iqr, threshold: 1.5) == (3.25 - 6.75)...(7.75 + 6.75))
        let z = s.fences(.robustZ, threshold: 3.5)
        #expect(abs(z.upperBound - (5.5 + 3.5 * 1.4826 * 2.5)) < 1e-9)
        #expect(!s.fences(.iqr, threshold: 1.5).contains(100))
    }

    /// Ten minutes is normal on a long-read category and an outlier on a quick-glance one.
    @Test func outliersAreJudgedPerCategory() {
        var rng = TestRandom()
        for method in OutlierPolicy.Method.allCases {
            var policy = OutlierPolicy()
            policy.method = method
            let detector = OutlierDetector(policy: policy)
            #expect(detector.judge(field: "dwell_ms", category: "books/novels", value: 600_000) == .unjudged, "too few values yet")
            for _ in 0..<200 {
                _ = detector.judge(field: "dwell_ms", category: "books/novels", value: Double.random(in: 300_000...900_000, using: &rng))
                _ = detector.judge(field: "dwell_ms", category: "grocery/fruit", value: Double.random(in: 2_000...8_000, using: &rng))
            }
            #expect(detector.judge(field: "dwell_ms", category: "books/novels", value: 600_000) == .normal)
            guard case .outlier(let fence) = detector.judge(field: "dwell_ms", category: "grocery/fruit", value: 600_000) else {
                Issue.record("10 minutes on fruit should be an outlier (\(method), seed \(rng.seed))")
                continue
            }
            #expect(fence > 8_000 && fence < 600_000)
            #expect(detector.judge(field: "dwell_ms", category: "grocery/fruit", value: 5_000) == .normal)
            // A new subcategory borrows its product type's statistics until it has its own.
            #expect(detector.judge(field: "dwell_ms", category: "grocery/vegetables", value: 600_000) != .normal)
        }
    }
}

@Suite struct SampleShopTests {
    @Test func theGeneratorIsDeterministicForASeed() {
        let a = SampleShop(users: 40, items: 60, days: 10, seed: 3)
        let b = SampleShop(users: 40, items: 60, days: 10, seed: 3)
        let c = SampleShop(users: 40, items: 60, days: 10, seed: 4)
        #expect(a.events == b.events && a.items == b.items)
        #expect(a.events != c.events)
        // Product types differ in what they carry.
        let apparel = a.items.filter { $0.category.hasPrefix("apparel") }
        let electronics = a.items.filter { $0.category.hasPrefix("electronics") }
        #expect(!apparel.isEmpty && apparel.allSatisfy { $0.attributes["size"] != nil && $0.attributes["color"] != nil })
        #expect(!electronics.isEmpty && electronics.allSatisfy { $0.brand != nil })
        #expect(Set(a.events.map(\.kind)) == ["profile", "page_view", "search", "purchase", "feedback"])
    }

    @Test func everyGeneratedEventPassesTheParser() throws {
        let shop = SampleShop(users: 30, items: 40, days: 5, seed: 9)
        let body = try JSONEncoder().encode(["events": Array(shop.events.prefix(1000))])
        let r = try EventParser().parse(body: Array(body), now: Date(timeIntervalSince1970: 1_800_000_000))
        #expect(r.rejected.isEmpty, "\(r.rejected.prefix(3))")
    }
}
