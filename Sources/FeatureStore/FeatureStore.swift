import Foundation
import GRDB
import Policy
import Storage

/// One minimized behavioural signal of a subject, as stored (sealed) in the feature store.
public struct StoredInteraction: Sendable, Equatable, Codable {
    /// Catalog item id.
    public var item: String
    public var kind: InteractionKind
    public var weight: Float
    /// Seconds since the epoch, UTC.
    public var time: Int64
    /// For `search_terms` rows: the query's words as signed feature-hash buckets (`±(bucket + 1)`) of a hasher
    /// `termWidth` wide. The words themselves are never stored.
    public var terms: [Int32]
    public var termWidth: Int32

    public init(item: String, kind: InteractionKind, weight: Float, time: Int64, terms: [Int32] = [], termWidth: Int32 = 0) {
        self.item = item
        self.kind = kind
        self.weight = weight
        self.time = time
        self.terms = terms
        self.termWidth = termWidth
    }
}

extension StoredInteraction {
    /// Compact binary form sealed at rest: `1 ‖ len ‖ item ‖ len ‖ kind ‖ weight (f32) ‖ time (i64)`, big endian;
    /// version 2 appends `width (i32) ‖ count (u16) ‖ terms (i32 each)`. JSON encoding cost more than the
    /// encryption itself on the ingest path.
    func encoded() -> [UInt8] {
        var out: [UInt8] = [terms.isEmpty ? 1 : 2]
        out.reserveCapacity(item.utf8.count + kind.rawValue.utf8.count + 23 + 4 * terms.count)
        for s in [item, kind.rawValue] {
            let n = UInt16(truncatingIfNeeded: s.utf8.count)
            out.append(UInt8(n >> 8)); out.append(UInt8(n & 0xff))
            out.append(contentsOf: s.utf8.prefix(Int(n)))
        }
        withUnsafeBytes(of: weight.bitPattern.bigEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: time.bigEndian) { out.append(contentsOf: $0) }
        if !terms.isEmpty {
            let count = min(terms.count, Int(UInt16.max))
            withUnsafeBytes(of: termWidth.bigEndian) { out.append(contentsOf: $0) }
            withUnsafeBytes(of: UInt16(count).bigEndian) { out.append(contentsOf: $0) }
            for t in terms.prefix(count) { withUnsafeBytes(of: t.bigEndian) { out.append(contentsOf: $0) } }
        }
        return out
    }

    init?(encoded b: [UInt8]) {
        guard let version = b.first, version == 1 || version == 2 else { return nil }
        var i = 1
        func string() -> String? {
            guard i + 2 <= b.count else { return nil }
            let n = Int(b[i]) << 8 | Int(b[i + 1])
            i += 2
            guard i + n <= b.count else { return nil }
            defer { i += n }
            return String(decoding: b[i..<(i + n)], as: UTF8.self)
        }
        guard let item = string(), let kind = string().flatMap(InteractionKind.init(rawValue:)), version == 1 ? i + 12 == b.count : i + 18 <= b.count
        else { return nil }
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 << 8 | UInt32(b[at + $1]) } }
        var t: UInt64 = 0
        for k in 0..<8 { t = t << 8 | UInt64(b[i + 4 + k]) }
        var terms: [Int32] = []
        var width: Int32 = 0
        if version == 2 {
            width = Int32(bitPattern: u32(i + 12))
            let count = Int(b[i + 16]) << 8 | Int(b[i + 17])
            guard i + 18 + 4 * count == b.count else { return nil }
            terms = (0..<count).map { Int32(bitPattern: u32(i + 18 + 4 * $0)) }
        }
        self.init(item: item, kind: kind, weight: Float(bitPattern: u32(i)), time: Int64(bitPattern: t), terms: terms, termWidth: width)
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

    public init(
        id: String, title: String, category: String, brand: String? = nil, price: Double? = nil, available: Bool = true,
        attributes: [String: String] = [:], tags: [String] = []
    ) {
        self.id = id
        self.title = title
        self.category = category
        self.brand = brand
        self.price = price
        self.available = available
        self.attributes = attributes
        self.tags = tags
    }

    /// `brand`, `price`, `attributes` and `tags` may be left out; `available` defaults to true.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        title = try c.decode(String.self, forKey: .title)
        category = try c.decode(String.self, forKey: .category)
        brand = try c.decodeIfPresent(String.self, forKey: .brand)
        price = try c.decodeIfPresent(Double.self, forKey: .price)
        available = try c.decodeIfPresent(Bool.self, forKey: .available) ?? true
        attributes = try c.decodeIfPresent([String: String].self, forKey: .attributes) ?? [:]
        tags = try c.decodeIfPresent([String].self, forKey: .tags) ?? []
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
    /// Per token, its generalized profile (age band, region, device class…); empty when none was sent.
    public var profiles: [[String: String]]
    /// Per token, how many purchase lines it has.
    public var purchases: [Int]
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
                try db.execute(
                    sql: """
                        -- Keyed by (token, id): a subject's rows share pages, so a batch touches few pages.
                        CREATE TABLE interactions (
                            token TEXT NOT NULL,
                            id TEXT NOT NULL,
                            day INTEGER NOT NULL,
                            body BLOB NOT NULL,
                            PRIMARY KEY (token, id)
                        ) WITHOUT ROWID;
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
            // Which rows a withdrawal already took out of the anonymous counts (see uncountAnonymous(of:in:)).
            migrator.registerMigration("featurestore.v2.uncounted") { db in
                try db.execute(sql: "ALTER TABLE interactions ADD COLUMN uncounted INTEGER NOT NULL DEFAULT 0")
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
        let body = try keys.seal(interaction.encoded(), token: Self.keyOwner(token), table: "interactions", rowID: id, in: db)
        try db.cachedStatement(sql: "INSERT OR IGNORE INTO interactions (id, token, day, body) VALUES (?, ?, ?, ?)")
            .execute(arguments: [id, token.rawValue, interaction.time / 86_400, body])
        return db.changesCount == 1
    }

    /// A subject's interactions, oldest first; empty when there are none or they were shredded.
    public func interactions(of token: SubjectToken, in db: Database) throws -> [StoredInteraction] {
        let rows = try Row.fetchAll(db.cachedStatement(sql: "SELECT id, body FROM interactions WHERE token = ?"), arguments: [token.rawValue])
        var out: [StoredInteraction] = []
        for row in rows {
            do {
                let plain = try keys.open(row["body"], token: Self.keyOwner(token), table: "interactions", rowID: row["id"], in: db)
                guard let interaction = StoredInteraction(encoded: plain) else {
                    throw StorageError(.unreadable, "a stored interaction has an unknown encoding")
                }
                out.append(interaction)
            } catch let error as StorageError where error.code == .shredded {
                continue
            }
        }
        return out.sorted { ($0.time, $0.item) < ($1.time, $1.item) }
    }

    /// Replaces a subject's generalized profile.
    public func setProfile(_ profile: [String: String], token: SubjectToken, in db: Database) throws {
        let body = try keys.seal(
            try JSONEncoder().encodeBytes(profile), token: Self.keyOwner(token), table: "profiles", rowID: token.rawValue, in: db)
        try db.cachedStatement(sql: "INSERT OR REPLACE INTO profiles (token, body) VALUES (?, ?)").execute(arguments: [token.rawValue, body])
    }

    public func profile(of token: SubjectToken, in db: Database) throws -> [String: String]? {
        guard let body = try Data.fetchOne(db.cachedStatement(sql: "SELECT body FROM profiles WHERE token = ?"), arguments: [token.rawValue]) else {
            return nil
        }
        do {
            return try JSONDecoder().decode(
                [String: String].self, from: Data(try keys.open(body, token: Self.keyOwner(token), table: "profiles", rowID: token.rawValue, in: db)))
        } catch let error as StorageError where error.code == .shredded {
            return nil
        }
    }

    /// Crypto-shreds everything held for a subject's personalization: the key first, then the rows. In one
    /// transaction only where nothing else is at stake (tests); the service shreds the key in a transaction of the
    /// key store of its own (``SubjectKeys/shredKeys(_:in:)``) before ``deleteRows(_:in:)``.
    /// - Returns: the number of rows deleted.
    @discardableResult
    public func shred(_ token: SubjectToken, in db: Database) throws -> Int {
        try keys.shred(token: Self.keyOwner(token), in: db)
        return try deleteRows(token, in: db)
    }

    /// Deletes a subject's sealed rows (after its key was shredded).
    /// - Returns: the number of rows deleted.
    @discardableResult
    public func deleteRows(_ token: SubjectToken, in db: Database) throws -> Int {
        try db.cachedStatement(sql: "DELETE FROM interactions WHERE token = ?").execute(arguments: [token.rawValue])
        var deleted = db.changesCount
        try db.cachedStatement(sql: "DELETE FROM profiles WHERE token = ?").execute(arguments: [token.rawValue])
        deleted += db.changesCount
        return deleted
    }

    /// Whether any row of the subject is still stored.
    public func hasData(_ token: SubjectToken, in db: Database) throws -> Bool {
        try Bool.fetchOne(
            db.cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM interactions WHERE token = ?) OR EXISTS(SELECT 1 FROM profiles WHERE token = ?)"),
            arguments: [token.rawValue, token.rawValue]) ?? false
    }

    /// An item's anonymous interactions on one day (days since the epoch, UTC).
    public struct AnonymousCount: Hashable, Sendable {
        public var item: String
        public var day: Int64
        public init(item: String, day: Int64) {
            self.item = item
            self.day = day
        }
    }

    /// Adds anonymous interaction counts (no subject, no consent needed): one statement per item and day of a
    /// batch, not one per event.
    public func countAnonymous(_ counts: [AnonymousCount: Int], in db: Database) throws {
        let statement = try db.cachedStatement(
            sql: """
                INSERT INTO item_daily_counts (item, day, count) VALUES (?, ?, ?)
                ON CONFLICT(item, day) DO UPDATE SET count = count + excluded.count
                """)
        for (key, n) in counts { try statement.execute(arguments: [key.item, key.day, n]) }
    }

    /// One stored event of a subject as ingestion counted it anonymously: its row, item and day.
    public struct CountedEvent: Sendable {
        let token: String
        let id: String
        let count: AnonymousCount
    }

    /// What these subjects' stored events added to the anonymous counts (one per item event) and not yet taken back
    /// out, read while their key still opens them: call before their key is shredded, in a read. A single row that
    /// cannot be opened or decoded is skipped (it cannot hold up a withdrawal); a key that cannot be read throws.
    public func countedEvents(of tokens: [SubjectToken], in db: Database) throws -> [CountedEvent] {
        var out: [CountedEvent] = []
        for token in tokens {
            // The key's own failures (it cannot be unwrapped, the key store cannot be read) are not skipped: they
            // would leave the events counted after the shred. Nil: shredded already.
            guard try keys.dataKey(for: Self.keyOwner(token), in: db, create: false) != nil else { continue }
            let rows = try Row.fetchAll(
                db.cachedStatement(sql: "SELECT id, body FROM interactions WHERE token = ? AND uncounted = 0"), arguments: [token.rawValue])
            for row in rows {
                let id: String = row["id"]
                guard let plain = try? keys.open(row["body"], token: Self.keyOwner(token), table: "interactions", rowID: id, in: db),
                    let x = StoredInteraction(encoded: plain), !x.item.isEmpty
                else { continue }
                out.append(CountedEvent(token: token.rawValue, id: id, count: AnonymousCount(item: x.item, day: x.time / 86_400)))
            }
        }
        return out
    }

    /// Takes `events` back out of the anonymous counts. Each row is marked as taken out in the same transaction and
    /// only a row this call marks is subtracted, so a repeated or concurrent withdrawal, an erasure after it, or a
    /// retry never takes one out twice. Counts that reach zero are deleted.
    /// - Returns: the number of events taken out.
    @discardableResult
    public func uncount(_ events: [CountedEvent], in db: Database) throws -> Int {
        var counts: [AnonymousCount: Int] = [:]
        let mark = try db.cachedStatement(sql: "UPDATE interactions SET uncounted = 1 WHERE token = ? AND id = ? AND uncounted = 0")
        for event in events {
            try mark.execute(arguments: [event.token, event.id])
            if db.changesCount == 1 { counts[event.count, default: 0] += 1 }
        }
        let subtract = try db.cachedStatement(sql: "UPDATE item_daily_counts SET count = MAX(count - ?, 0) WHERE item = ? AND day = ?")
        let prune = try db.cachedStatement(sql: "DELETE FROM item_daily_counts WHERE item = ? AND day = ? AND count = 0")
        for (key, n) in counts {
            try subtract.execute(arguments: [n, key.item, key.day])
            try prune.execute(arguments: [key.item, key.day])
        }
        return counts.values.reduce(0, +)
    }

    // MARK: - Catalog

    /// Inserts or replaces catalog items.
    public func upsert(_ items: [CatalogItem], at: Date, in db: Database) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        for item in items {
            try db.cachedStatement(sql: "INSERT OR REPLACE INTO items (id, body, available, updated_at) VALUES (?, ?, ?, ?)").execute(arguments: [
                item.id, String(decoding: try encoder.encode(item), as: UTF8.self), item.available, Int64(at.timeIntervalSince1970),
            ])
        }
    }

    public func catalog(in db: Database) throws -> [CatalogItem] {
        try String.fetchAll(db, sql: "SELECT body FROM items ORDER BY id").map { try JSONDecoder().decode(CatalogItem.self, from: Data($0.utf8)) }
    }

    // MARK: - Retention

    /// Deletes interactions older than `days` days before `now`. Returns how many rows went.
    public func deleteInteractions(olderThanDays days: Int, now: Date, in db: Database) throws -> Int {
        let cutoff = Int64(now.timeIntervalSince1970) / 86_400 - Int64(days)
        try db.cachedStatement(sql: "DELETE FROM interactions WHERE day < ?").execute(arguments: [cutoff])
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
        var profiles: [[String: String]] = []
        var purchases: [Int] = []
        var interactions: [(user: Int32, item: Int32, weight: Float, time: Int64)] = []
        let tokenStrings = try String.fetchAll(db, sql: "SELECT DISTINCT token FROM interactions ORDER BY token")
        for raw in tokenStrings {
            guard let token = SubjectToken(rawValue: raw) else { continue }
            let rows = try self.interactions(of: token, in: db)
            if rows.allSatisfy({ $0.item.isEmpty }) { continue }
            let u = Int32(tokens.count)
            tokens.append(token)
            profiles.append(try profile(of: token, in: db) ?? [:])
            purchases.append(rows.filter { $0.kind == .purchase }.count)
            // Search terms are no item: they feed content profiles at serving time only.
            for r in rows where !r.item.isEmpty { interactions.append((u, index(r.item), r.weight, r.time)) }
        }
        var counts = [Float](repeating: 0, count: items.count)
        for row in try Row.fetchAll(db, sql: "SELECT item, SUM(count) AS n FROM item_daily_counts GROUP BY item") {
            let i = Int(index(row["item"]))
            if i >= counts.count { counts.append(contentsOf: [Float](repeating: 0, count: i - counts.count + 1)) }
            counts[i] = Float(row["n"] as Int64)
        }
        if counts.count < items.count { counts.append(contentsOf: [Float](repeating: 0, count: items.count - counts.count)) }
        return TrainingSnapshot(
            tokens: tokens, items: items, interactions: interactions, anonymousCounts: counts, profiles: profiles, purchases: purchases)
    }

    /// Anonymous daily counts since `sinceDay` (for trending), per item id.
    public func recentCounts(sinceDay: Int64, in db: Database) throws -> [(item: String, day: Int64, count: Int64)] {
        try Row.fetchAll(db.cachedStatement(sql: "SELECT item, day, count FROM item_daily_counts WHERE day >= ?"), arguments: [sinceDay]).map {
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
                try db.execute(
                    sql: """
                        -- Both the event-id hash and the content fingerprint are keys under the subject's token,
                        -- so a delivery check reads and writes the subject's page only.
                        CREATE TABLE deliveries (
                            token TEXT NOT NULL,
                            key TEXT NOT NULL,
                            at INTEGER NOT NULL,
                            PRIMARY KEY (token, key)
                        ) WITHOUT ROWID;
                        """)
            }
        }
    }

    public init() {}

    /// Forgets deliveries older than `cutoff` (epoch seconds); a redelivery after that counts as new.
    public func deleteOlder(than cutoff: Int64, in db: Database) throws -> Int {
        try db.cachedStatement(sql: "DELETE FROM deliveries WHERE at < ?").execute(arguments: [cutoff])
        return db.changesCount
    }

    /// Forgets every delivery of `token` (erasure): keyed hashes and exact times would otherwise outlive the
    /// subject as an activity timeline.
    public func erase(_ token: SubjectToken, in db: Database) throws {
        try db.cachedStatement(sql: "DELETE FROM deliveries WHERE token = ?").execute(arguments: [token.rawValue])
    }

    /// One event's delivery keys: keyed hashes of its id and of its content, never the raw values.
    public struct Keys: Sendable, Equatable {
        public var id: String
        public var content: String
        /// The same event's keys as recorded before deliveries had a key of their own; set while such records remain,
        /// so that a redelivery of an event first delivered then is still recognized.
        public var legacy: (id: String, content: String)?

        public init(id: String, content: String, legacy: (id: String, content: String)? = nil) {
            self.id = id
            self.content = content
            self.legacy = legacy
        }

        public static func == (a: Keys, b: Keys) -> Bool {
            a.id == b.id && a.content == b.content && a.legacy?.id == b.legacy?.id && a.legacy?.content == b.legacy?.content
        }
    }

    /// Records a delivery of one subject's event. Returns false when the same id, or the same content, was
    /// delivered before.
    public func firstDelivery(token: SubjectToken, keys: Keys, at: Int64, in db: Database) throws -> Bool {
        if let legacy = keys.legacy {
            let seen = try Bool.fetchOne(
                db.cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM deliveries WHERE token = ? AND key IN (?, ?))"),
                arguments: [token.rawValue, "i:" + legacy.id, "c:" + legacy.content])
            if seen == true { return false }
        }
        let insert = try db.cachedStatement(sql: "INSERT OR IGNORE INTO deliveries (token, key, at) VALUES (?, ?, ?)")
        try insert.execute(arguments: [token.rawValue, "d:" + keys.id, at])
        guard db.changesCount == 1 else { return false }
        try insert.execute(arguments: [token.rawValue, "k:" + keys.content, at])
        guard db.changesCount == 1 else {
            // Same content under a new id: a repeated delivery. Forget the id so the check stays consistent.
            try db.cachedStatement(sql: "DELETE FROM deliveries WHERE token = ? AND key = ?").execute(arguments: [token.rawValue, "d:" + keys.id])
            return false
        }
        return true
    }

    /// Whether any delivery is still recorded under the keys of before (`i:` and `c:`).
    public func hasLegacy(in db: Database) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT EXISTS(SELECT 1 FROM deliveries WHERE substr(key, 1, 2) IN ('i:', 'c:'))") ?? false
    }
}
