import Foundation
import GRDB
import Storage

/// One minimized behavioural signal of a subject, as stored (sealed) in the feature store.
public struct StoredInteraction: Sendable, Equatable, Codable {
    /// Catalog item id.
    public var item: String
    /// Event kind (`page_view`, `purchase`, `search_click`, `rating`, `click`, `add_to_cart`, …).
    public var kind: String
    public var weight: Float
    /// Seconds since the epoch, UTC.
    public var time: Int64

    public init(item: String, kind: String, weight: Float, time: Int64) {
        self.item = item
        self.kind = kind
        self.weight = weight
        self.time = time
    }
}

/// A catalog item. Catalog data is not personal and is stored in clear.
public struct CatalogItem: Sendable, Equatable, Codable {
    public var id: String
    public var title: String
    /// A path such as `apparel/shoes`.
    public var category: String
    public var brand: String?
    public var price: Double?
    public var available: Bool
    public var attributes: [String: String]
    public var tags: [String]

    public init(id: String, title: String, category: String, brand: String? = nil, price: Double? = nil, available: Bool = true,
                attributes: [String: String] = [:], tags: [String] = []) {
        self.id = id
        self.title = title
        self.category = category
        self.brand = brand
        self.price = price
        self.available = available
        self.attributes = attributes
        self.tags = tags
    }
}

/// Everything training reads: dense indices and weights, never a raw identifier.
public struct TrainingSnapshot: Sendable {
    public var tokens: [SubjectToken]
    public var items: [String]
    /// (user index, item index, weight, time)
    public var interactions: [(user: Int32, item: Int32, weight: Float, time: Int64)]
    /// Anonymous interaction counts per item index (includes subjects without personalization consent).
    public var anonymousCounts: [Float]
}

/// Minimized, encrypted, token-keyed interactions and profiles; the catalog; anonymous aggregates.
///
/// A subject's rows are sealed with the subject's personalization data key (`<token>#personalization`), so a
/// withdrawal or an erasure shreds them by deleting one key.
public struct FeatureStore: Sendable {
    public struct Migrations: MigrationSet {
        public init() {}
        public func register(in migrator: inout DatabaseMigrator) {
            migrator.registerMigration("featurestore.v1") { db in
                try db.execute(sql: """
                    CREATE TABLE interactions (
                        id TEXT PRIMARY KEY NOT NULL,
                        token TEXT NOT NULL,
                        day INTEGER NOT NULL,
                        body BLOB NOT NULL
                    ) WITHOUT ROWID;
                    CREATE INDEX interactions_token ON interactions(token);
                    CREATE INDEX interactions_day ON interactions(day);
                    CREATE TABLE profiles (
                        token TEXT PRIMARY KEY NOT NULL,
                        body BLOB NOT NULL
                    ) WITHOUT ROWID;
                    CREATE TABLE items (
                        id TEXT PRIMARY KEY NOT NULL,
                        body TEXT NOT NULL,
                        available INTEGER NOT NULL,
                        updated_at INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    CREATE TABLE item_daily_counts (
                        item TEXT NOT NULL,
                        day INTEGER NOT NULL,
                        count INTEGER NOT NULL,
                        PRIMARY KEY (item, day)
                    ) WITHOUT ROWID;
                    """)
            }
        }
    }

    let keys: SubjectKeys
    public init(keys: SubjectKeys) { self.keys = keys }

    public static func keyOwner(_ token: SubjectToken) -> String { "\(token.rawValue)#personalization" }

    /// Stores one interaction; `id` must be unique and free of raw identifiers (a keyed hash of the event id).
    /// - Returns: false when the id was already stored (a repeated delivery).
    @discardableResult
    public func add(_ interaction: StoredInteraction, id: String, token: SubjectToken, in db: Database) throws -> Bool {
        if try Bool.fetchOne(db, sql: "SELECT 1 FROM interactions WHERE id = ?", arguments: [id]) == true { return false }
        let body = try keys.seal(try JSONEncoder().encodeBytes(interaction), token: Self.keyOwner(token), table: "interactions", rowID: id, in: db)
        try db.execute(sql: "INSERT INTO interactions (id, token, day, body) VALUES (?, ?, ?, ?)",
                       arguments: [id, token.rawValue, interaction.time / 86_400, body])
        return true
    }

    /// A subject's interactions, oldest first; empty when there are none or they were shredded.
    public func interactions(of token: SubjectToken, in db: Database) throws -> [StoredInteraction] {
        let rows = try Row.fetchAll(db, sql: "SELECT id, body FROM interactions WHERE token = ?", arguments: [token.rawValue])
        var out: [StoredInteraction] = []
        for row in rows {
            do {
                let plain = try keys.open(row["body"], token: Self.keyOwner(token), table: "interactions", rowID: row["id"], in: db)
                out.append(try JSONDecoder().decode(StoredInteraction.self, from: Data(plain)))
            } catch let error as StorageError where error.code == .shredded {
                continue
            }
        }
        return out.sorted { ($0.time, $0.item) < ($1.time, $1.item) }
    }

    /// Replaces a subject's generalized profile.
    public func setProfile(_ profile: [String: String], token: SubjectToken, in db: Database) throws {
        let body = try keys.seal(try JSONEncoder().encodeBytes(profile), token: Self.keyOwner(token), table: "profiles", rowID: token.rawValue, in: db)
        try db.execute(sql: "INSERT OR REPLACE INTO profiles (token, body) VALUES (?, ?)", arguments: [token.rawValue, body])
    }

    public func profile(of token: SubjectToken, in db: Database) throws -> [String: String]? {
        guard let body = try Data.fetchOne(db, sql: "SELECT body FROM profiles WHERE token = ?", arguments: [token.rawValue]) else { return nil }
        do {
            return try JSONDecoder().decode([String: String].self, from: Data(try keys.open(body, token: Self.keyOwner(token), table: "profiles", rowID: token.rawValue, in: db)))
        } catch let error as StorageError where error.code == .shredded {
            return nil
        }
    }

    /// Crypto-shreds everything held for a subject's personalization: the key first, then the rows.
    /// - Returns: the number of rows deleted.
    @discardableResult
    public func shred(_ token: SubjectToken, in db: Database) throws -> Int {
        try keys.shred(token: Self.keyOwner(token), in: db)
        try db.execute(sql: "DELETE FROM interactions WHERE token = ?", arguments: [token.rawValue])
        var deleted = db.changesCount
        try db.execute(sql: "DELETE FROM profiles WHERE token = ?", arguments: [token.rawValue])
        deleted += db.changesCount
        return deleted
    }

    /// Whether any row of the subject is still stored.
    public func hasData(_ token: SubjectToken, in db: Database) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT EXISTS(SELECT 1 FROM interactions WHERE token = ?) OR EXISTS(SELECT 1 FROM profiles WHERE token = ?)",
                          arguments: [token.rawValue, token.rawValue]) ?? false
    }

    /// Counts an anonymous interaction with `item` on `day` (no subject, no consent needed).
    public func countAnonymous(item: String, time: Int64, in db: Database) throws {
        try db.execute(sql: """
            INSERT INTO item_daily_counts (item, day, count) VALUES (?, ?, 1)
            ON CONFLICT(item, day) DO UPDATE SET count = count + 1
            """, arguments: [item, time / 86_400])
    }

    // MARK: - Catalog

    /// Inserts or replaces catalog items.
    public func upsert(_ items: [CatalogItem], at: Date, in db: Database) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        for item in items {
            try db.execute(sql: "INSERT OR REPLACE INTO items (id, body, available, updated_at) VALUES (?, ?, ?, ?)",
                           arguments: [item.id, String(decoding: try encoder.encode(item), as: UTF8.self), item.available, Int64(at.timeIntervalSince1970)])
        }
    }

    public func catalog(in db: Database) throws -> [CatalogItem] {
        try String.fetchAll(db, sql: "SELECT body FROM items ORDER BY id").map { try JSONDecoder().decode(CatalogItem.self, from: Data($0.utf8)) }
    }

    // MARK: - Retention

    /// Deletes interactions older than `days` days before `now`. Returns how many rows went.
    public func deleteInteractions(olderThanDays days: Int, now: Date, in db: Database) throws -> Int {
        let cutoff = Int64(now.timeIntervalSince1970) / 86_400 - Int64(days)
        try db.execute(sql: "DELETE FROM interactions WHERE day < ?", arguments: [cutoff])
        return db.changesCount
    }

    // MARK: - Training

    /// Decrypts every readable interaction into dense indices. Items come from the catalog first, then any
    /// item seen only in interactions; users are the tokens with at least one readable interaction.
    public func trainingSnapshot(in db: Database) throws -> TrainingSnapshot {
        var items = try String.fetchAll(db, sql: "SELECT id FROM items ORDER BY id")
        var itemIndex = Dictionary(uniqueKeysWithValues: items.enumerated().map { ($1, Int32($0)) })
        func index(_ item: String) -> Int32 {
            if let i = itemIndex[item] { return i }
            let i = Int32(items.count)
            items.append(item)
            itemIndex[item] = i
            return i
        }
        var tokens: [SubjectToken] = []
        var interactions: [(user: Int32, item: Int32, weight: Float, time: Int64)] = []
        let tokenStrings = try String.fetchAll(db, sql: "SELECT DISTINCT token FROM interactions ORDER BY token")
        for raw in tokenStrings {
            guard let token = SubjectToken(rawValue: raw) else { continue }
            let rows = try self.interactions(of: token, in: db)
            if rows.isEmpty { continue }
            let u = Int32(tokens.count)
            tokens.append(token)
            for r in rows { interactions.append((u, index(r.item), r.weight, r.time)) }
        }
        var counts = [Float](repeating: 0, count: items.count)
        for row in try Row.fetchAll(db, sql: "SELECT item, SUM(count) AS n FROM item_daily_counts GROUP BY item") {
            let i = Int(index(row["item"]))
            if i >= counts.count { counts.append(contentsOf: [Float](repeating: 0, count: i - counts.count + 1)) }
            counts[i] = Float(row["n"] as Int64)
        }
        if counts.count < items.count { counts.append(contentsOf: [Float](repeating: 0, count: items.count - counts.count)) }
        return TrainingSnapshot(tokens: tokens, items: items, interactions: interactions, anonymousCounts: counts)
    }

    /// Anonymous daily counts since `sinceDay` (for trending), per item id.
    public func recentCounts(sinceDay: Int64, in db: Database) throws -> [(item: String, day: Int64, count: Int64)] {
        try Row.fetchAll(db, sql: "SELECT item, day, count FROM item_daily_counts WHERE day >= ?", arguments: [sinceDay]).map {
            ($0["item"], $0["day"], $0["count"])
        }
    }
}

extension JSONEncoder {
    func encodeBytes<T: Encodable>(_ value: T) throws -> [UInt8] { Array(try encode(value)) }
}

/// Which event deliveries were already seen, by keyed hash of the event id and by content fingerprint.
/// Repeated deliveries are acknowledged and stored once.
public struct DeliveryLog: Sendable {
    public struct Migrations: MigrationSet {
        public init() {}
        public func register(in migrator: inout DatabaseMigrator) {
            migrator.registerMigration("featurestore.v1.deliveries") { db in
                try db.execute(sql: """
                    CREATE TABLE deliveries (
                        id TEXT PRIMARY KEY NOT NULL,
                        content TEXT NOT NULL,
                        at INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    CREATE INDEX deliveries_content ON deliveries(content);
                    """)
            }
        }
    }

    public init() {}

    /// Records a delivery. Returns false when the same id, or the same content, was delivered before.
    public func firstDelivery(id: String, content: String, at: Int64, in db: Database) throws -> Bool {
        if try Bool.fetchOne(db, sql: "SELECT 1 FROM deliveries WHERE id = ? OR content = ? LIMIT 1", arguments: [id, content]) == true {
            return false
        }
        try db.execute(sql: "INSERT INTO deliveries (id, content, at) VALUES (?, ?, ?)", arguments: [id, content, at])
        return true
    }
}
