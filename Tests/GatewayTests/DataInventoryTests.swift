import Foundation
import GRDB
import Gateway
import Hummingbird
import HummingbirdTesting
import Pseudonymization
import Storage
import Testing

/// Issue #21, item 2: erasure removes every row derived from the subject, and no table with a token escapes the
/// inventory that says what erasure, export and retention do with it.
@Suite struct DataInventoryTests {
    /// Columns that name a subject: a new table with one must be in `DataInventory`.
    static func tokenTables(_ f: GatewayFixture) throws -> [String: [String]] {
        try f.service.store.pool.read { db in
            var found: [String: [String]] = [:]
            for schema in ["main", Store.keyStoreSchema] {
                let tables = try String.fetchAll(db, sql: "SELECT name FROM \(schema).sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'grdb_%'")
                for table in tables {
                    let columns = try String.fetchAll(db, sql: "SELECT name FROM pragma_table_info(?, ?)", arguments: [table, schema])
                    let named = columns.filter { $0.contains("token") || $0 == "canonical" || $0.contains("subject") }
                    if !named.isEmpty { found["\(schema).\(table)"] = named.sorted() }
                }
            }
            return found
        }
    }

    @Test func everyTableWithATokenIsInTheInventory() throws {
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
    @Test func erasureLeavesNoRowOfAnyOfTheSubjectsTokens() async throws {
        let f = try GatewayFixture()
        let alias = f.token("jane-alias"), canonical = f.token("jane@example.com")
        try await f.app.test(.router) { client in
            for subject in ["jane@example.com", "jane-alias", "someone-else"] {
                let r = try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent(subject))
                #expect(r.status == 201)
            }
            let profile: [String: Any] = ["id": "p-1", "kind": "profile", "subject": "jane@example.com", "timestamp": "2026-11-20T10:00:00Z",
                                          "source": "web", "age": 31, "country": "DE"]
            let events: [[String: Any]] = [pageView("e-1", "jane@example.com", "sku-1"), pageView("e-2", "jane-alias", "sku-2"),
                                           pageView("e-3", "someone-else", "sku-1"), profile]
            let r = try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": events])
            #expect(r.status == 200)
        }
        _ = try await f.service.linkSubject("jane@example.com", namespace: "default", attributes: LinkAttributes(email: "jane@example.com"), actor: "test")
        let link = try await f.service.linkSubject("jane-alias", namespace: "default", attributes: LinkAttributes(email: "JANE@example.com"), actor: "test")
        #expect(link?.canonical == canonical)
        try await f.app.test(.router) { client in
            // After the link, events of the alias land under the canonical token.
            let later = try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": [pageView("e-4", "jane-alias", "sku-3")]])
            #expect(later.status == 200)
            let before = try f.rowsNaming([alias, canonical])
            for table in ["main.interactions", "main.profiles", "main.deliveries", "main.match_keys", "main.identity_links", "keystore.subject_keys"] {
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
}

extension GatewayFixture {
    /// Rows per inventory table whose token columns name one of `tokens` (or a key owner `<token>#…`).
    func rowsNaming(_ tokens: [SubjectToken]) throws -> [String: Int] {
        try service.store.pool.read { db in
            var counts: [String: Int] = [:]
            for table in DataInventory.tables {
                for column in table.tokenColumns {
                    for token in tokens {
                        counts[table.name, default: 0] += try Int.fetchOne(
                            db, sql: "SELECT count(*) FROM \(table.name) WHERE \(column) = ? OR \(column) LIKE ? || '#%'",
                            arguments: [token.rawValue, token.rawValue]) ?? 0
                    }
                }
            }
            return counts
        }
    }
}
