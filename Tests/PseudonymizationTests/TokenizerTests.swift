import Foundation
import Policy
import Storage
import Testing
import Vault
@testable import Pseudonymization

let policiesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Policies").path

@Suite struct TokenizerTests {
    @Test func tokensAreStableAcrossKeyReloadsAndNeverContainTheId() throws {
        let dir = NSTemporaryDirectory() + "veil-tok-\(UUID().uuidString)"
        try KeyRing.initialize(directory: dir)
        let a = Tokenizer(try KeyRing.load(directory: dir).fingerprinter(for: .subjectTokens))
        let b = Tokenizer(try KeyRing.load(directory: dir).fingerprinter(for: .subjectTokens))
        let id = "alice@example.com"
        let token = a.token(for: id)
        #expect(token == b.token(for: id))
        #expect(token.rawValue.count == 32)
        #expect(!token.rawValue.contains("alice"))
        #expect(SubjectToken(rawValue: token.rawValue) == token)
        #expect(a.token(for: "bob@example.com") != token)
    }

    @Test func namespacesGiveUnlinkableTokens() {
        let t = Tokenizer(.ephemeral(.subjectTokens))
        #expect(t.token(for: "u-42", namespace: "shop-a") != t.token(for: "u-42", namespace: "shop-b"))
        #expect(t.token(for: "bc", namespace: "a") != t.token(for: "c", namespace: "ab"))
        #expect(Tokenizer(.ephemeral(.subjectTokens)).token(for: "u-42") != t.token(for: "u-42"))
    }

    @Test func malformedTokensAreRejected() {
        #expect(SubjectToken(rawValue: "../../etc/passwd") == nil)
        #expect(SubjectToken(rawValue: String(repeating: "G", count: 32)) == nil)
        #expect(SubjectToken(rawValue: "abc") == nil)
    }
}

@Suite struct MinimizerTests {
    let minimizer: Minimizer

    init() throws {
        minimizer = Minimizer(policy: try PolicyParser.load(directory: policiesDirectory), currentYear: 2026)
    }

    @Test func demographicsAreGeneralizedAndIdentifiersDropped() {
        let out = minimizer.minimize(
            [
                "age": .number(37), "gender": .string("f"), "location": .string("DE-BY-Munich"),
                "device": .string("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)"), "email": .string("x@example.com"),
                "ip": .string("203.0.113.7"), "name": .string("Alice"), "shoe_size": .number(39),
            ], category: "demographics")
        #expect(out == ["age_band": .string("35-44"), "gender": .string("f"), "location": .string("DE-BY"), "device": .string("mobile")])
    }

    @Test func birthYearBecomesABand() {
        #expect(minimizer.minimize(["birth_year": .number(2000)], category: "demographics") == ["age_band": .string("25-34")])
    }

    @Test func browsingKeepsItsFieldsAndClassifiesTheReferrer() {
        let out = minimizer.minimize(
            [
                "item": .string("sku-1"), "dwell_ms": .number(1200), "scroll_depth": .number(0.5),
                "referrer": .string("https://www.google.com/search?q=shoes"), "url": .string("https://shop/p?email=x"), "ip": .string("1.2.3.4"),
            ], category: "browsing")
        #expect(out == ["item": .string("sku-1"), "dwell_ms": .number(1200), "scroll_depth": .number(0.5), "referrer": .string("search")])
    }

    @Test func unknownCategoryKeepsNothing() {
        #expect(minimizer.minimize(["item": .string("sku-1")], category: "telepathy").isEmpty)
    }

    @Test(arguments: [(17, "under-18"), (18, "18-24"), (24, "18-24"), (25, "25-34"), (44, "35-44"), (64, "55-64"), (65, "65+")])
    func ageBands(_ age: Int, _ band: String) {
        #expect(Generalize.ageBand(age) == band)
    }
}
