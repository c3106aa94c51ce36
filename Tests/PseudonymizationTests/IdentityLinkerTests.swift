import Foundation
import GRDB
import Storage
import Testing
import Vault
@testable import Pseudonymization

struct LinkerFixture {
    let store: Store
    let linker = IdentityLinker(key: SecretKey(randomCount: 32))
    let tokenizer = Tokenizer(key: SecretKey(randomCount: 32))

    init() throws {
        store = try Store(path: NSTemporaryDirectory() + "veil-link-\(UUID().uuidString)/veil.sqlite", migrations: [IdentityLinker.Migrations()])
    }

    func link(_ id: String, _ ns: String, _ a: LinkAttributes) throws -> IdentityLinker.Link? {
        try store.pool.write { try linker.link(tokenizer.token(for: id, namespace: ns), attributes: a, in: $0) }
    }

    func canonical(_ id: String, _ ns: String) throws -> SubjectToken {
        try store.pool.read { try linker.canonical(tokenizer.token(for: id, namespace: ns), in: $0) }
    }
}

@Suite struct IdentityLinkerTests {
    @Test func exactRuleLinksANormalizedEmailAcrossSources() throws {
        let f = try LinkerFixture()
        #expect(try f.link("app-42", "shop", LinkAttributes(email: "Alice@Example.com ")) == nil)
        let link = try #require(try f.link("crm-9", "crm", LinkAttributes(email: "alice@example.com")))
        #expect(link.rule == "email")
        #expect(try f.canonical("crm-9", "crm") == f.tokenizer.token(for: "app-42", namespace: "shop"))
        #expect(try f.canonical("app-42", "shop") == f.tokenizer.token(for: "app-42", namespace: "shop"))
    }

    @Test(arguments: [("Jon Smith", true), ("john smyth", true), ("Jane Smith", false), ("Bob Jones", false)])
    func fuzzyRuleNeedsTheSamePostcodeAndASimilarName(_ name: String, _ linked: Bool) throws {
        let f = try LinkerFixture()
        _ = try f.link("a", "shop", LinkAttributes(name: "John Smith", postcode: "10115"))
        #expect((try f.link("b", "crm", LinkAttributes(name: name, postcode: "10 115")) != nil) == linked)
        // A different postcode never links, however close the name.
        #expect(try f.link("c", "crm", LinkAttributes(name: "John Smith", postcode: "80331")) == nil)
    }

    @Test func linksCanBeUndone() throws {
        let f = try LinkerFixture()
        _ = try f.link("a", "shop", LinkAttributes(email: "x@example.com"))
        _ = try f.link("b", "crm", LinkAttributes(email: "x@example.com"))
        #expect(try f.store.pool.write { try f.linker.unlink(f.tokenizer.token(for: "b", namespace: "crm"), in: $0) })
        #expect(try f.canonical("b", "crm") == f.tokenizer.token(for: "b", namespace: "crm"))
    }

    @Test func onlyKeyedHashesOfTheAttributesAreStored() throws {
        let f = try LinkerFixture()
        _ = try f.link("a", "shop", LinkAttributes(email: "carol.canary@example.org", name: "Carol Canary", postcode: "SW1A 1AA"))
        try f.store.checkpointAndTruncate()
        let bytes = try Data(contentsOf: URL(fileURLWithPath: f.store.path))
        for needle in ["carol", "canary", "example.org", "SW1A", "car", "ana"] {
            #expect(bytes.range(of: Data(needle.utf8)) == nil, "\(needle)")
        }
    }
}
