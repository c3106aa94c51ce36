import Foundation
import Policy
import Storage
import Vault

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

    public init(
        tokens: [SubjectToken], items: [String], interactions: [(user: Int32, item: Int32, weight: Float, time: Int64)],
        anonymousCounts: [Float], profiles: [[String: String]], purchases: [Int]
    ) {
        self.tokens = tokens
        self.items = items
        self.interactions = interactions
        self.anonymousCounts = anonymousCounts
        self.profiles = profiles
        self.purchases = purchases
    }
}

/// Minimized, encrypted, token-keyed interactions and profiles; the catalog; anonymous aggregates.
///
/// A subject's rows are sealed with the subject's personalization data key (`<token>#personalization`), so a
/// withdrawal or an erasure shreds them by deleting one key.
public struct FeatureStore: Sendable {
    let keys: SubjectKeys
    public init(keys: SubjectKeys) { self.keys = keys }

    public static func keyOwner(_ token: SubjectToken) -> DataKeyOwner { DataKeyOwner(token: token.rawValue, use: .personalization) }

    /// Seals each interaction under its person's key and stores it; an `id` must be unique and free of raw identifiers
    /// (a keyed hash of the event id), and one already stored is skipped (a repeated delivery). One insert for all of
    /// them on a database server.
    public func add(
        _ interactions: [(interaction: StoredInteraction, id: String, token: SubjectToken)], in tx: some FeatureRepository & SubjectKeyRepository
    ) throws {
        guard !interactions.isEmpty else { return }
        try tx.insertInteractions(
            interactions.map { item in
                let owner = Self.keyOwner(item.token)
                let body = try keys.seal(item.interaction.encoded(), at: RowAddress(table: .interactions, row: item.id, owner: owner), in: tx)
                return (item.id, item.token.rawValue, item.interaction.time / 86_400, body)
            })
    }

    /// A subject's interactions, oldest first; empty when there are none or they were shredded.
    public func interactions(of token: SubjectToken, in tx: some FeatureRepository & SubjectKeyRepository) throws -> [StoredInteraction] {
        let rows = try tx.interactionRows(token: token.rawValue, uncountedOnly: false)
        guard !rows.isEmpty, let open = try keys.opener(for: Self.keyOwner(token), in: tx) else { return [] }
        var out: [StoredInteraction] = []
        for row in rows {
            let plain = try open(row.body, RowAddress(table: .interactions, row: row.id, owner: Self.keyOwner(token)))
            guard let interaction = StoredInteraction(encoded: plain) else {
                throw StorageError(.unreadable, "a stored interaction has an unknown encoding")
            }
            out.append(interaction)
        }
        return out.sorted { ($0.time, $0.item) < ($1.time, $1.item) }
    }

    /// Replaces a subject's generalized profile.
    public func setProfile(_ profile: [String: String], token: SubjectToken, in tx: some FeatureRepository & SubjectKeyRepository) throws {
        let body = try keys.seal(
            try JSONEncoder().encodeBytes(profile), at: RowAddress(table: .profiles, row: token.rawValue, owner: Self.keyOwner(token)), in: tx)
        try tx.setProfile(token: token.rawValue, body: body)
    }

    public func profile(of token: SubjectToken, in tx: some FeatureRepository & SubjectKeyRepository) throws -> [String: String]? {
        guard let body = try tx.profile(token: token.rawValue) else { return nil }
        do {
            return try JSONDecoder().decode(
                [String: String].self,
                from: Data(try keys.open(body, at: RowAddress(table: .profiles, row: token.rawValue, owner: Self.keyOwner(token)), in: tx)))
        } catch let error as StorageError where error.code == .shredded {
            return nil
        }
    }

    /// Crypto-shreds everything held for a subject's personalization: the key first, then the rows. In one
    /// transaction only where nothing else is at stake (tests); the service shreds the key in a transaction of the
    /// key store of its own (``SubjectKeys/shredKeys(_:in:)``) before ``deleteRows(_:in:)``.
    /// - Returns: the number of rows deleted.
    @discardableResult
    public func shred(_ token: SubjectToken, in tx: some FeatureRepository & SubjectKeyRepository) throws -> Int {
        try keys.shred(Self.keyOwner(token), in: tx)
        return try deleteRows(token, in: tx)
    }

    /// Deletes a subject's sealed rows (after its key was shredded).
    /// - Returns: the number of rows deleted.
    @discardableResult
    public func deleteRows(_ token: SubjectToken, in tx: some FeatureRepository) throws -> Int {
        try tx.deleteSubjectRows(token: token.rawValue)
    }

    /// Whether any row of the subject is still stored.
    public func hasData(_ token: SubjectToken, in tx: some FeatureRepository) throws -> Bool {
        try tx.subjectHasRows(token: token.rawValue)
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

    /// Adds anonymous interaction counts (no subject, no consent needed): one per item and day of a batch, not one per
    /// event, and one statement for all of them on a database server.
    public func countAnonymous(_ counts: [AnonymousCount: Int], in tx: some FeatureRepository) throws {
        guard !counts.isEmpty else { return }
        try tx.addAnonymousCounts(counts.map { ($0.key.item, $0.key.day, $0.value) })
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
    public func countedEvents(of tokens: [SubjectToken], in tx: some FeatureRepository & SubjectKeyRepository) throws -> [CountedEvent] {
        var out: [CountedEvent] = []
        for token in tokens {
            // The key's own failures (it cannot be unwrapped, the key store cannot be read) are not skipped: they
            // would leave the events counted after the shred. Nil: shredded already.
            guard let open = try keys.opener(for: Self.keyOwner(token), in: tx) else { continue }
            for row in try tx.interactionRows(token: token.rawValue, uncountedOnly: true) {
                let id = row.id
                guard let plain = try? open(row.body, RowAddress(table: .interactions, row: id, owner: Self.keyOwner(token))),
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
    public func uncount(_ events: [CountedEvent], in tx: some FeatureRepository) throws -> Int {
        var counts: [AnonymousCount: Int] = [:]
        for event in events {
            if try tx.markUncounted(token: event.token, id: event.id) { counts[event.count, default: 0] += 1 }
        }
        for (key, n) in counts { try tx.subtractAnonymousCount(item: key.item, day: key.day, count: n) }
        return counts.values.reduce(0, +)
    }

    // MARK: - Catalog

    /// Inserts or replaces catalog items.
    public func upsert(_ items: [CatalogItem], at: Date, in tx: some FeatureRepository) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        for item in items {
            try tx.setCatalogItem(
                id: item.id, body: String(decoding: try encoder.encode(item), as: UTF8.self), available: item.available,
                updatedAt: Int64(at.timeIntervalSince1970))
        }
    }

    public func catalog(in tx: some FeatureRepository) throws -> [CatalogItem] {
        try tx.catalogBodies().map { try JSONDecoder().decode(CatalogItem.self, from: Data($0.utf8)) }
    }

    // MARK: - Retention

    /// Deletes interactions older than `days` days before `now`. Returns how many rows went.
    public func deleteInteractions(olderThanDays days: Int, now: Date, in tx: some FeatureRepository) throws -> Int {
        try tx.deleteInteractions(beforeDay: Int64(now.timeIntervalSince1970) / 86_400 - Int64(days))
    }

    // MARK: - Training

    /// Decrypts every readable interaction into dense indices. Items come from the catalog first, then any
    /// item seen only in interactions; users are the tokens with at least one readable interaction.
    public func trainingSnapshot(in tx: some FeatureRepository & SubjectKeyRepository) throws -> TrainingSnapshot {
        var items = try tx.catalogItemIDs()
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
        for raw in try tx.interactionTokens() {
            guard let token = SubjectToken(rawValue: raw) else { continue }
            let rows = try self.interactions(of: token, in: tx)
            if rows.allSatisfy({ $0.item.isEmpty }) { continue }
            let u = Int32(tokens.count)
            tokens.append(token)
            profiles.append(try profile(of: token, in: tx) ?? [:])
            purchases.append(rows.filter { $0.kind == .purchase }.count)
            // Search terms are no item: they feed content profiles at serving time only.
            for r in rows where !r.item.isEmpty { interactions.append((u, index(r.item), r.weight, r.time)) }
        }
        var counts = [Float](repeating: 0, count: items.count)
        for total in try tx.anonymousTotals() {
            let i = Int(index(total.item))
            if i >= counts.count { counts.append(contentsOf: [Float](repeating: 0, count: i - counts.count + 1)) }
            counts[i] = Float(total.count)
        }
        if counts.count < items.count { counts.append(contentsOf: [Float](repeating: 0, count: items.count - counts.count)) }
        return TrainingSnapshot(
            tokens: tokens, items: items, interactions: interactions, anonymousCounts: counts, profiles: profiles, purchases: purchases)
    }

    /// Anonymous daily counts since `sinceDay` (for trending), per item id.
    public func recentCounts(sinceDay: Int64, in tx: some FeatureRepository) throws -> [(item: String, day: Int64, count: Int64)] {
        try tx.anonymousCounts(sinceDay: sinceDay)
    }
}

extension JSONEncoder {
    func encodeBytes<T: Encodable>(_ value: T) throws -> [UInt8] { Array(try encode(value)) }
}

/// Which event deliveries were already seen, by keyed hash of the event id and by content fingerprint.
/// Repeated deliveries are acknowledged and stored once.
public struct DeliveryLog: Sendable {
    public init() {}

    /// Forgets deliveries older than `cutoff` (epoch seconds); a redelivery after that counts as new.
    public func deleteOlder(than cutoff: Int64, in tx: some DeliveryRepository) throws -> Int {
        try tx.deleteDeliveries(before: cutoff)
    }

    /// Forgets every delivery of `token` (erasure): keyed hashes and exact times would otherwise outlive the
    /// subject as an activity timeline.
    public func erase(_ token: SubjectToken, in tx: some DeliveryRepository) throws {
        try tx.deleteDeliveries(token: token.rawValue)
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
    public func firstDelivery(token: SubjectToken, keys: Keys, at: Int64, in tx: some DeliveryRepository) throws -> Bool {
        if let legacy = keys.legacy, try tx.deliveryRecorded(token: token.rawValue, anyOf: ["i:" + legacy.id, "c:" + legacy.content]) {
            return false
        }
        guard try tx.recordDelivery(token: token.rawValue, key: "d:" + keys.id, at: at) else { return false }
        guard try tx.recordDelivery(token: token.rawValue, key: "k:" + keys.content, at: at) else {
            // Same content under a new id: a repeated delivery. Forget the id so the check stays consistent.
            try tx.deleteDelivery(token: token.rawValue, key: "d:" + keys.id)
            return false
        }
        return true
    }

    /// ``firstDelivery(token:keys:at:in:)`` for a batch's events, in order (a later event of the batch with an id or a
    /// content already seen in it is a repeat too): one read of every key the batch names and one insert of the new
    /// ones, where one event at a time costs two or three statements each on a database server.
    public func firstDeliveries(_ events: [(token: SubjectToken, keys: Keys, at: Int64)], in tx: some DeliveryRepository) throws -> [Bool] {
        // In process an insert that finds its key answers as fast as a read would: one event at a time, no read first.
        guard tx.statementsAreRoundTrips else { return try events.map { try firstDelivery(token: $0.token, keys: $0.keys, at: $0.at, in: tx) } }
        var asked: [DeliveryKey] = []
        for e in events {
            asked += [DeliveryKey(token: e.token.rawValue, key: "d:" + e.keys.id), DeliveryKey(token: e.token.rawValue, key: "k:" + e.keys.content)]
            if let legacy = e.keys.legacy {
                asked += [
                    DeliveryKey(token: e.token.rawValue, key: "i:" + legacy.id), DeliveryKey(token: e.token.rawValue, key: "c:" + legacy.content),
                ]
            }
        }
        var seen = try tx.recordedDeliveries(among: Array(Set(asked)))
        var firsts: [Bool] = []
        var recorded: [(key: DeliveryKey, at: Int64)] = []
        for e in events {
            let token = e.token.rawValue
            let id = DeliveryKey(token: token, key: "d:" + e.keys.id), content = DeliveryKey(token: token, key: "k:" + e.keys.content)
            let legacySeen = e.keys.legacy.map {
                seen.contains(DeliveryKey(token: token, key: "i:" + $0.id)) || seen.contains(DeliveryKey(token: token, key: "c:" + $0.content))
            }
            // As one at a time: a seen id, or a seen content (whose new id is then not kept), is a repeat.
            guard legacySeen != true, !seen.contains(id), !seen.contains(content) else {
                firsts.append(false)
                continue
            }
            seen.formUnion([id, content])
            recorded += [(id, e.at), (content, e.at)]
            firsts.append(true)
        }
        if !recorded.isEmpty { try tx.recordDeliveries(recorded) }
        return firsts
    }

    /// Whether any delivery is still recorded under the keys of before (`i:` and `c:`).
    public func hasLegacy(in tx: some DeliveryRepository) throws -> Bool {
        try tx.deliveriesRecorded(withPrefixes: ["i:", "c:"])
    }
}

/// What the feature store holds, as seen from one transaction of a storage backend: sealed interactions and
/// profiles keyed by token, the catalog in clear, and anonymous daily counts per item.
public protocol FeatureRepository {
    /// Stores a sealed interaction. Returns false when `id` was already stored.
    func insertInteraction(id: String, token: String, day: Int64, body: [UInt8]) throws -> Bool
    /// Stores sealed interactions, each unless its `id` was already stored (one statement on a database server; by
    /// default one insert each).
    func insertInteractions(_ rows: [(id: String, token: String, day: Int64, body: [UInt8])]) throws
    /// A token's sealed interactions; with `uncountedOnly`, only those not yet taken out of the anonymous counts.
    func interactionRows(token: String, uncountedOnly: Bool) throws -> [(id: String, body: [UInt8])]
    /// Marks an interaction as taken out of the anonymous counts. Returns false when it already was, or is gone.
    func markUncounted(token: String, id: String) throws -> Bool
    /// Every token with at least one interaction, sorted.
    func interactionTokens() throws -> [String]
    /// Deletes interactions of days before `day`. Returns how many.
    func deleteInteractions(beforeDay day: Int64) throws -> Int
    func setProfile(token: String, body: [UInt8]) throws
    func profile(token: String) throws -> [UInt8]?
    /// Deletes a token's interactions and profile. Returns how many rows went.
    func deleteSubjectRows(token: String) throws -> Int
    func subjectHasRows(token: String) throws -> Bool
    func addAnonymousCount(item: String, day: Int64, count: Int) throws
    /// Adds to several items' daily counts (one statement on a database server; by default one each).
    func addAnonymousCounts(_ counts: [(item: String, day: Int64, count: Int)]) throws
    /// Subtracts from a day's count (never below zero); a count that reaches zero goes.
    func subtractAnonymousCount(item: String, day: Int64, count: Int) throws
    /// Each item's anonymous count over all days.
    func anonymousTotals() throws -> [(item: String, count: Int64)]
    func anonymousCounts(sinceDay: Int64) throws -> [(item: String, day: Int64, count: Int64)]
    func setCatalogItem(id: String, body: String, available: Bool, updatedAt: Int64) throws
    /// Every catalog item's JSON body, by id.
    func catalogBodies() throws -> [String]
    /// Every catalog item id, sorted.
    func catalogItemIDs() throws -> [String]
}

extension FeatureRepository {
    public func addAnonymousCounts(_ counts: [(item: String, day: Int64, count: Int)]) throws {
        for c in counts { try addAnonymousCount(item: c.item, day: c.day, count: c.count) }
    }

    public func insertInteractions(_ rows: [(id: String, token: String, day: Int64, body: [UInt8])]) throws {
        for row in rows { _ = try insertInteraction(id: row.id, token: row.token, day: row.day, body: row.body) }
    }
}

/// One recorded delivery key of one token.
public struct DeliveryKey: Hashable, Sendable {
    public var token: String
    public var key: String

    public init(token: String, key: String) {
        self.token = token
        self.key = key
    }
}

/// What the delivery log holds, as seen from one transaction of a storage backend: keyed hashes per token.
public protocol DeliveryRepository {
    /// Records `key` for `token`. Returns false when it was recorded already.
    func recordDelivery(token: String, key: String, at: Int64) throws -> Bool
    func deliveryRecorded(token: String, anyOf keys: [String]) throws -> Bool
    func deleteDelivery(token: String, key: String) throws
    func deleteDeliveries(token: String) throws
    /// Forgets deliveries recorded before `cutoff` (epoch seconds). Returns how many.
    func deleteDeliveries(before cutoff: Int64) throws -> Int
    /// Whether any key starts with one of `prefixes` (two characters each).
    func deliveriesRecorded(withPrefixes prefixes: [String]) throws -> Bool
    /// True when each statement is a round trip to a database server, so that a batch is better read and written set
    /// by set; false (the default) in process, where reading before inserting only adds statements.
    var statementsAreRoundTrips: Bool { get }
    /// Which of `keys` are recorded (one statement on a database server; by default one read each).
    func recordedDeliveries(among keys: [DeliveryKey]) throws -> Set<DeliveryKey>
    /// Records keys none of which is recorded yet (one statement on a database server; by default one insert each).
    func recordDeliveries(_ keys: [(key: DeliveryKey, at: Int64)]) throws
}

extension DeliveryRepository {
    public var statementsAreRoundTrips: Bool { false }

    public func recordedDeliveries(among keys: [DeliveryKey]) throws -> Set<DeliveryKey> {
        Set(try keys.filter { try deliveryRecorded(token: $0.token, anyOf: [$0.key]) })
    }

    public func recordDeliveries(_ keys: [(key: DeliveryKey, at: Int64)]) throws {
        for k in keys { _ = try recordDelivery(token: k.key.token, key: k.key.key, at: k.at) }
    }
}
