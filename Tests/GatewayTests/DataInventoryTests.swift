import Foundation
import VeilCore
import GRDB
import SQLiteStorage
import Gateway
import Hummingbird
import HummingbirdTesting
import Policy
import Pseudonymization
import Storage
import Testing

/// Issue #21, item 2: erasure removes every row derived from the subject, and no table with a token escapes the
/// inventory that says what erasure, export and retention do with it.
@Suite struct DataInventoryTests {
    /// Columns that name a subject: a new table with one must be in `DataInventory`.
    static func tokenTables(_ f: GatewayFixture) throws -> [String: [String]] {
        try f.service.sqlite.pool.read { db in
            var found: [String: [String]] = [:]
            for schema in ["main", Store.keyStoreSchema] {
                let tables = try String.fetchAll(
                    db, sql: "SELECT name FROM \(schema).sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'grdb_%'")
                for table in tables {
                    let columns = try String.fetchAll(db, sql: "SELECT name FROM pragma_table_info(?, ?)", arguments: [table, schema])
                    let named = columns.filter { $0.contains("token") || $0 == "canonical" || $0.contains("subject") }
                    if !named.isEmpty { found["\(schema).\(table)"] = named.sorted() }
                }
            }
            return found
        }
    }

    @Test(sqliteOnly) func everyTableWithATokenIsInTheInventory() throws {
        let f = try GatewayFixture()
        let found = try Self.tokenTables(f)
        let listed = Dictionary(uniqueKeysWithValues: DataInventory.tables.map { ($0.name, $0.tokenColumns.sorted()) })
        #expect(found.count >= 9, "found \(found.keys.sorted())")
        for (table, columns) in found {
            #expect(listed[table] == columns, "\(table) holds \(columns) but the inventory says \(listed[table].map { "\($0)" } ?? "nothing")")
        }
        for table in listed.keys { #expect(found[table] != nil, "the inventory lists \(table), which does not exist") }
    }

    /// A subject with data in every table (consent, events under two linked ids, a profile, deliveries, match keys),
    /// erased by its canonical id: no table that erasure deletes holds any of its tokens afterwards.
    @Test(sqliteOnly) func erasureLeavesNoRowOfAnyOfTheSubjectsTokens() async throws {
        let f = try GatewayFixture()
        let alias = f.token("jane-alias"), canonical = f.token("jane@example.com")
        try await f.app.test(.router) { client in
            for subject in ["jane@example.com", "jane-alias", "someone-else"] {
                let r = try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent(subject))
                #expect(r.status == 201)
            }
            let profile: [String: Any] = [
                "id": "p-1", "kind": "profile", "subject": "jane@example.com", "timestamp": "2026-11-20T10:00:00Z",
                "source": "web", "age": 31, "country": "DE",
            ]
            let events: [[String: Any]] = [
                pageView("e-1", "jane@example.com", "sku-1"), pageView("e-2", "jane-alias", "sku-2"),
                pageView("e-3", "someone-else", "sku-1"), profile,
            ]
            let r = try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": events])
            #expect(r.status == 200)
        }
        _ = try await f.service.subjects.link(
            "jane@example.com", namespace: "default", attributes: LinkAttributes(email: "jane@example.com"), actor: "test")
        let link = try await f.service.subjects.link(
            "jane-alias", namespace: "default", attributes: LinkAttributes(email: "JANE@example.com"), actor: "test")
        #expect(link?.canonical == canonical)
        try await f.app.test(.router) { client in
            // After the link, events of the alias land under the canonical token.
            let later = try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": [pageView("e-4", "jane-alias", "sku-3")]])
            #expect(later.status == 200)
            let before = try f.rowsNaming([alias, canonical])
            for table in ["main.interactions", "main.profiles", "main.deliveries", "main.match_keys", "main.identity_links", "keystore.subject_keys"]
            {
                #expect((before[table] ?? 0) > 0, "the seed left nothing in \(table)")
            }
            let r = try await client.call(.post, "/v1/subjects/jane%40example.com/erase", key: f.keys["compliance-officer"])
            #expect(r.status == 200)
            #expect(r.json["rows_deleted"] as? Int ?? 0 >= 4)
        }
        let after = try f.rowsNaming([alias, canonical])
        for table in DataInventory.tables {
            switch table.erasure {
            case .deleted: #expect(after[table.name] ?? 0 == 0, "\(table.name) still holds \(after[table.name] ?? 0) rows of the erased subject")
            case .kept: break
            }
        }
        // Someone else's rows are untouched.
        #expect(try f.rowsNaming([f.token("someone-else")])["main.interactions"] == 1)
    }
    /// A person reached through a chain of links (alias → old canonical → newer canonical), with grants under each
    /// token: erasure through any of the ids withdraws every grant and leaves no row of any token; a withdrawal
    /// shreds the rows written under an alias before its link; export shows them before.
    @Test(sqliteOnly) func erasureAndWithdrawalReachTheWholePersonThroughChainsOfLinks() async throws {
        let f = try GatewayFixture()
        let ids = ["p-alias", "p-old", "p-new"]
        try await f.app.test(.router) { client in
            for (n, id) in ids.enumerated() {
                let granted = try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent(id))
                #expect(granted.status == 201)
                #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent(id, "marketing")).status == 201)
                let r = try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": [pageView("pe-\(n)", id, "sku-\(n)")]])
                #expect(r.json["accepted"] as? Int == 1 && r.json["anonymized"] as? Int == 0)
            }
        }
        // p-alias → p-old first; then p-old's person is linked to p-new (a later, separate match): a chain.
        _ = try await f.service.subjects.link("p-old", namespace: "default", attributes: LinkAttributes(email: "a@example.com"), actor: "test")
        _ = try await f.service.subjects.link("p-alias", namespace: "default", attributes: LinkAttributes(email: "a@example.com"), actor: "test")
        _ = try await f.service.subjects.link(
            "p-new", namespace: "default", attributes: LinkAttributes(name: "Pat Person", postcode: "10115"), actor: "test")
        _ = try await f.service.subjects.link(
            "p-old", namespace: "default", attributes: LinkAttributes(name: "Pat Person", postcode: "10115"), actor: "test")
        let tokens = ids.map { f.token($0) }
        try await f.app.test(.router) { client in
            let export = try await client.call(.get, "/v1/subjects/p-alias/export", key: f.keys["compliance-officer"])
            #expect((export.json["interactions"] as? [Any])?.count == 3, "the export shows what erasure will reach: \(export.body.prefix(300))")
            let r = try await client.call(.post, "/v1/subjects/p-alias/erase", key: f.keys["compliance-officer"])
            #expect(r.status == 200)
            #expect(r.json["rows_deleted"] as? Int == 3)
        }
        let left = try f.rowsNaming(tokens)
        for table in DataInventory.tables where table.erasure == .deleted {
            #expect(left[table.name] ?? 0 == 0, "\(table.name) still holds \(left[table.name] ?? 0) rows of the person")
        }
        let granted = try await f.service.sqlite.pool.read { db in
            try Int.fetchOne(
                db, sql: "SELECT count(*) FROM consent_state WHERE granted = 1 AND token IN (?, ?, ?)",
                arguments: StatementArguments(tokens.map(\.rawValue)))
        }
        #expect(granted == 0, "a grant of a linked token survived the erasure")
    }

    /// A grant of a purpose the policy has since dropped cannot be withdrawn on the record (the ledger refuses an
    /// unknown purpose) and is never allowed: the erasure must go through regardless.
    @Test func anErasureSucceedsWhenAGrantedPurposeWasRemovedFromThePolicy() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            let granted = try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("gone-purpose", "marketing"))
            #expect(granted.status == 201)
        }
        let policies = f.root + "/Policies-without-marketing"
        try FileManager.default.copyItem(atPath: f.service.paths.policiesDirectory, toPath: policies)
        let purposes = try String(contentsOfFile: policies + "/purposes.yaml", encoding: .utf8)
        let marketing = try #require(purposes.range(of: "  - name: marketing\n"))
        try String(purposes[..<marketing.lowerBound]).write(toFile: policies + "/purposes.yaml", atomically: true, encoding: .utf8)
        let restarted = try VeilService(
            paths: RuntimePaths(
                dataDirectory: f.service.paths.dataDirectory, keysDirectory: f.service.paths.keysDirectory,
                policiesDirectory: policies), passphrase: nil)
        #expect(restarted.policy.purposes["marketing"] == nil)
        try await Application(router: GatewayRouter.build(service: restarted)).test(.router) { client in
            let r = try await client.call(.post, "/v1/subjects/gone-purpose/erase", key: f.keys["compliance-officer"])
            #expect(r.status == 200, "\(r.body)")
        }
    }

    @Test(sqliteOnly) func aWithdrawalShredsWhatALinkedIdWroteBeforeItsLink() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            for id in ["w-main", "w-alias"] {
                let granted = try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent(id))
                #expect(granted.status == 201)
                #expect(
                    try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": [pageView("we-\(id)", id, "sku-1")]]).status
                        == 200)
            }
        }
        _ = try await f.service.subjects.link("w-main", namespace: "default", attributes: LinkAttributes(email: "w@example.com"), actor: "test")
        _ = try await f.service.subjects.link("w-alias", namespace: "default", attributes: LinkAttributes(email: "w@example.com"), actor: "test")
        #expect(try f.storedInteractions("w-alias") == 1)
        try await f.app.test(.router) { client in
            let withdrawn = try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("w-main", granted: false))
            #expect(withdrawn.status == 201)
        }
        #expect(try f.storedInteractions("w-alias") == 0, "the alias's rows outlived the person's withdrawal")
        #expect(try f.storedInteractions("w-main") == 0)
    }
}

extension GatewayFixture {
    /// Rows per inventory table whose token columns name one of `tokens` (or a key owner `<token>#…`).
    func rowsNaming(_ tokens: [SubjectToken]) throws -> [String: Int] {
        try service.sqlite.pool.read { db in
            var counts: [String: Int] = [:]
            for table in DataInventory.tables {
                for column in table.tokenColumns {
                    for token in tokens {
                        counts[table.name, default: 0] +=
                            try Int.fetchOne(
                                db, sql: "SELECT count(*) FROM \(table.name) WHERE \(column) = ? OR \(column) LIKE ? || '#%'",
                                arguments: [token.rawValue, token.rawValue]) ?? 0
                    }
                }
            }
            return counts
        }
    }
}
