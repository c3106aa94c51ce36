import Consent
import FeatureStore
import Foundation
import NIOCore
import Persistence
import PostgresNIO
import Pseudonymization
import Storage
import Vault

// Each repository of the operational database, as the SQLite backend implements it, in PostgreSQL's dialect.

extension PostgresTransaction: SubjectKeyRepository {
    public var isReadOnlyTransaction: Bool { readOnly }

    public func onRollback(_ body: @escaping @Sendable () -> Void) { addRollbackHook(body) }

    public func wrappedSubjectKey(owner: String) throws -> [UInt8]? {
        try value("SELECT wrapped FROM veil_keys.subject_keys WHERE token = \(owner)", as: ByteBuffer.self)?.bytes
    }

    public func subjectKeysExisting(among owners: [String]) throws -> Set<String> {
        guard !owners.isEmpty else { return [] }
        return Set(try rows("SELECT token FROM veil_keys.subject_keys WHERE token = ANY(\(owners))").map { try $0.decode(String.self) })
    }

    public func insertSubjectKey(owner: String, version: UInt32, wrapped: [UInt8], createdAt: Int64) throws {
        try run(
            "INSERT INTO veil_keys.subject_keys (token, key_version, wrapped, created_at) VALUES (\(owner), \(Int64(version)), \(Bytes(wrapped)), \(createdAt))"
        )
        try run("DELETE FROM veil_keys.shredded_subjects WHERE token = \(owner)")
    }

    public func deleteSubjectKey(owner: String, shreddedAt: Int64) throws -> Bool {
        let existed = try run("DELETE FROM veil_keys.subject_keys WHERE token = \(owner)") > 0
        try run(
            """
            INSERT INTO veil_keys.shredded_subjects (token, shredded_at) VALUES (\(owner), \(shreddedAt))
            ON CONFLICT (token) DO UPDATE SET shredded_at = excluded.shredded_at
            """)
        return existed
    }

    public func subjectKeys(notUnder version: UInt32, limit: Int) throws -> [(owner: String, wrapped: [UInt8])] {
        try rows("SELECT token, wrapped FROM veil_keys.subject_keys WHERE key_version <> \(Int64(version)) LIMIT \(limit)").map {
            let (token, wrapped) = try $0.decode((String, ByteBuffer).self)
            return (token, wrapped.bytes)
        }
    }

    public func replaceSubjectKey(owner: String, version: UInt32, wrapped: [UInt8]) throws {
        try run("UPDATE veil_keys.subject_keys SET wrapped = \(Bytes(wrapped)), key_version = \(Int64(version)) WHERE token = \(owner)")
    }

    public func subjectKeyVersionCounts() throws -> [UInt32: Int] {
        var counts: [UInt32: Int] = [:]
        for row in try rows("SELECT key_version, COUNT(*) FROM veil_keys.subject_keys GROUP BY key_version") {
            let (version, n) = try row.decode((Int64, Int64).self)
            counts[UInt32(version)] = Int(n)
        }
        return counts
    }
}

extension PostgresTransaction: ConsentRepository {
    public func consentHead() throws -> (sequence: Int64, hash: String)? {
        try rows("SELECT seq, hash FROM consent_events ORDER BY seq DESC LIMIT 1").first.map { try $0.decode((Int64, String).self) }
    }

    public func appendConsentEvent(_ e: StoredConsentEvent, state s: ConsentStateRow) throws {
        try run(
            """
            INSERT INTO consent_events (seq, token, purpose, body, prev_hash, hash)
            VALUES (\(e.sequence), \(e.token), \(e.purpose), \(e.body), \(e.previousHash), \(e.hash))
            """)
        try run(
            """
            INSERT INTO consent_state (token, purpose, granted, seq, expires_at, notice_version, purpose_version)
            VALUES (\(s.token), \(s.purpose), \(s.granted), \(s.sequence), \(s.expiresAt), \(s.noticeVersion), \(s.purposeVersion))
            ON CONFLICT (token, purpose) DO UPDATE SET granted = excluded.granted, seq = excluded.seq, expires_at = excluded.expires_at,
                notice_version = excluded.notice_version, purpose_version = excluded.purpose_version
            """)
    }

    public func consentStates(tokens: [String], purpose: String) throws -> [String: ConsentStateRow] {
        guard !tokens.isEmpty else { return [:] }
        let found = try rows(
            """
            SELECT token, purpose, granted, seq, expires_at, notice_version, purpose_version FROM consent_state
            WHERE token = ANY(\(tokens)) AND purpose = \(purpose)
            """
        ).map(Self.consentStateRow)
        return Dictionary(found.map { ($0.token, $0) }, uniquingKeysWith: { a, _ in a })
    }

    public func consentState(token: String, purpose: String) throws -> ConsentStateRow? {
        try rows(
            """
            SELECT token, purpose, granted, seq, expires_at, notice_version, purpose_version FROM consent_state
            WHERE token = \(token) AND purpose = \(purpose)
            """
        ).first.map(Self.consentStateRow)
    }

    public func grantedConsentPurposes(token: String) throws -> [String] {
        try rows("SELECT purpose FROM consent_state WHERE token = \(token) AND granted ORDER BY purpose").map { try $0.decode(String.self) }
    }

    public func consentEvents(token: String) throws -> [StoredConsentEvent] {
        try rows("SELECT seq, token, purpose, body, prev_hash, hash FROM consent_events WHERE token = \(token) ORDER BY seq").map(
            Self.storedConsentEvent)
    }

    public func forEachConsentEvent(_ body: (StoredConsentEvent) throws -> Bool) throws {
        // In pages by sequence number: a ledger of millions of events is never held in memory at once.
        var after: Int64 = -1
        while true {
            let page = try rows(
                "SELECT seq, token, purpose, body, prev_hash, hash FROM consent_events WHERE seq > \(after) ORDER BY seq LIMIT 10000")
            for row in page {
                let event = try Self.storedConsentEvent(row)
                guard try body(event) else { return }
                after = event.sequence
            }
            if page.count < 10000 { return }
        }
    }

    public func forEachConsentState(_ body: (ConsentStateRow) throws -> Void) throws {
        var after = ("", "")
        while true {
            let page = try rows(
                """
                SELECT token, purpose, granted, seq, expires_at, notice_version, purpose_version FROM consent_state
                WHERE (token, purpose) > (\(after.0), \(after.1)) ORDER BY token, purpose LIMIT 10000
                """)
            for row in page {
                let state = try Self.consentStateRow(row)
                try body(state)
                after = (state.token, state.purpose)
            }
            if page.count < 10000 { return }
        }
    }

    public func lapsedConsents(atMillis: Int64) throws -> [(token: String, purpose: String)] {
        try rows("SELECT token, purpose FROM consent_state WHERE granted AND expires_at IS NOT NULL AND expires_at <= \(atMillis)").map {
            try $0.decode((String, String).self)
        }
    }

    static func storedConsentEvent(_ row: PostgresRow) throws -> StoredConsentEvent {
        let (seq, token, purpose, body, prev, hash) = try row.decode((Int64, String, String, String, String, String).self)
        return StoredConsentEvent(sequence: seq, token: token, purpose: purpose, body: body, previousHash: prev, hash: hash)
    }

    static func consentStateRow(_ row: PostgresRow) throws -> ConsentStateRow {
        let (token, purpose, granted, seq, expires, notice, version) = try row.decode((String, String, Bool, Int64, Int64?, String, Int).self)
        return ConsentStateRow(
            token: token, purpose: purpose, granted: granted, sequence: seq, expiresAt: expires, noticeVersion: notice, purposeVersion: version)
    }
}

extension PostgresTransaction: IdentityRepository {
    public func identityExists(token: String) throws -> Bool {
        try value("SELECT 1 FROM identities WHERE token = \(token)", as: Int32.self) != nil
    }

    public func identity(token: String) throws -> [UInt8]? {
        try value("SELECT body FROM identities WHERE token = \(token)", as: ByteBuffer.self)?.bytes
    }

    public func insertIdentity(token: String, body: [UInt8]) throws {
        try run("INSERT INTO identities (token, body) VALUES (\(token), \(Bytes(body)))")
    }

    public func deleteIdentity(token: String) throws {
        try run("DELETE FROM identities WHERE token = \(token)")
    }

    public func identitiesExisting(among tokens: [String]) throws -> Set<String> {
        guard !tokens.isEmpty else { return [] }
        return Set(try rows("SELECT token FROM identities WHERE token = ANY(\(tokens))").map { try $0.decode(String.self) })
    }

    public func insertIdentities(_ rows: [(token: String, body: [UInt8])]) throws {
        guard !rows.isEmpty else { return }
        // Bodies as base64 text: an array of bytea is not what the driver binds a Swift array of bytes as.
        let tokens = rows.map(\.token), bodies = rows.map { Data($0.body).base64EncodedString() }
        try run(
            "INSERT INTO identities (token, body) SELECT t, decode(b, 'base64') FROM unnest(\(tokens)::text[], \(bodies)::text[]) AS u(t, b)")
    }
}

extension PostgresTransaction: LinkRepository {
    public func link(of token: String) throws -> StoredLink? {
        try rows("SELECT token, canonical, rule, score, created_at, scope FROM identity_links WHERE token = \(token)").first.map(Self.storedLink)
    }

    public func links(of tokens: [String]) throws -> [String: StoredLink] {
        guard !tokens.isEmpty else { return [:] }
        let found = try rows("SELECT token, canonical, rule, score, created_at, scope FROM identity_links WHERE token = ANY(\(tokens))").map(
            Self.storedLink)
        return Dictionary(found.map { ($0.token, $0) }, uniquingKeysWith: { a, _ in a })
    }

    static func storedLink(_ row: PostgresRow) throws -> StoredLink {
        let (token, canonical, rule, score, created, scope) = try row.decode((String, String, String, Double, Int64, String?).self)
        return StoredLink(token: token, canonical: canonical, rule: rule, score: score, createdAt: created, scope: scope)
    }

    public func setLink(_ l: StoredLink) throws {
        try run(
            """
            INSERT INTO identity_links (token, canonical, rule, score, created_at, scope)
            VALUES (\(l.token), \(l.canonical), \(l.rule), \(l.score), \(l.createdAt), \(l.scope))
            ON CONFLICT (token) DO UPDATE SET canonical = excluded.canonical, rule = excluded.rule, score = excluded.score,
                created_at = excluded.created_at, scope = excluded.scope
            """)
    }

    public func deleteLink(token: String) throws -> Bool {
        try run("DELETE FROM identity_links WHERE token = \(token)") > 0
    }

    public func linkedTokens(canonical: String) throws -> [String] {
        try rows("SELECT token FROM identity_links WHERE canonical = \(canonical)").map { try $0.decode(String.self) }
    }

    public func unscopedLinkCount() throws -> Int {
        Int(try value("SELECT count(*) FROM identity_links WHERE scope IS NULL", as: Int64.self) ?? 0)
    }

    public func deleteUnscopedLinks() throws -> Int {
        try run("DELETE FROM identity_links WHERE scope IS NULL")
    }

    public func matchKeyHolders(kind: String, key: String, excluding: String, limit: Int?) throws -> [(token: String, nameGrams: String?)] {
        let bound = limit.map(Int64.init)
        return try rows(
            """
            SELECT token, name_grams FROM match_keys WHERE kind = \(kind) AND key = \(key) AND token <> \(excluding)
            ORDER BY token COLLATE "C" LIMIT \(bound)
            """
        ).map { try $0.decode((String, String?).self) }
    }

    public func addMatchKey(kind: String, key: String, token: String, nameGrams: String?) throws {
        if let nameGrams {
            try run(
                """
                INSERT INTO match_keys (kind, key, token, name_grams) VALUES (\(kind), \(key), \(token), \(nameGrams))
                ON CONFLICT (kind, key, token) DO UPDATE SET name_grams = excluded.name_grams
                """)
        } else {
            try run(
                "INSERT INTO match_keys (kind, key, token, name_grams) VALUES (\(kind), \(key), \(token), NULL) ON CONFLICT DO NOTHING")
        }
    }

    public func forgetMatchKeysAndLinks(token: String) throws {
        try run("DELETE FROM match_keys WHERE token = \(token)")
        try run("DELETE FROM identity_links WHERE token = \(token) OR canonical = \(token)")
    }
}

extension PostgresTransaction: FeatureRepository {
    public func insertInteraction(id: String, token: String, day: Int64, body: [UInt8]) throws -> Bool {
        try run(
            "INSERT INTO interactions (id, token, day, body) VALUES (\(id), \(token), \(day), \(Bytes(body))) ON CONFLICT DO NOTHING") == 1
    }

    public func insertInteractions(_ rows: [(id: String, token: String, day: Int64, body: [UInt8])]) throws {
        guard !rows.isEmpty else { return }
        let ids = rows.map(\.id), tokens = rows.map(\.token), days = rows.map(\.day), bodies = rows.map { Data($0.body).base64EncodedString() }
        try run(
            """
            INSERT INTO interactions (id, token, day, body)
            SELECT i, t, d, decode(b, 'base64') FROM unnest(\(ids)::text[], \(tokens)::text[], \(days)::int8[], \(bodies)::text[]) AS u(i, t, d, b)
            ON CONFLICT DO NOTHING
            """)
    }

    public func interactionRows(token: String, uncountedOnly: Bool) throws -> [(id: String, body: [UInt8])] {
        let query: PostgresQuery =
            uncountedOnly
            ? "SELECT id, body FROM interactions WHERE token = \(token) AND NOT uncounted"
            : "SELECT id, body FROM interactions WHERE token = \(token)"
        return try rows(query).map {
            let (id, body) = try $0.decode((String, ByteBuffer).self)
            return (id, body.bytes)
        }
    }

    public func markUncounted(token: String, id: String) throws -> Bool {
        try run("UPDATE interactions SET uncounted = TRUE WHERE token = \(token) AND id = \(id) AND NOT uncounted") == 1
    }

    public func interactionTokens() throws -> [String] {
        try rows("SELECT DISTINCT token FROM interactions ORDER BY token").map { try $0.decode(String.self) }
    }

    public func deleteInteractions(beforeDay day: Int64) throws -> Int {
        try run("DELETE FROM interactions WHERE day < \(day)")
    }

    public func setProfile(token: String, body: [UInt8]) throws {
        try run(
            "INSERT INTO profiles (token, body) VALUES (\(token), \(Bytes(body))) ON CONFLICT (token) DO UPDATE SET body = excluded.body")
    }

    public func profile(token: String) throws -> [UInt8]? {
        try value("SELECT body FROM profiles WHERE token = \(token)", as: ByteBuffer.self)?.bytes
    }

    public func deleteSubjectRows(token: String) throws -> Int {
        try run("DELETE FROM interactions WHERE token = \(token)") + run("DELETE FROM profiles WHERE token = \(token)")
    }

    public func subjectHasRows(token: String) throws -> Bool {
        try value(
            "SELECT EXISTS(SELECT 1 FROM interactions WHERE token = \(token)) OR EXISTS(SELECT 1 FROM profiles WHERE token = \(token))",
            as: Bool.self) ?? false
    }

    public func addAnonymousCount(item: String, day: Int64, count: Int) throws {
        try run(
            """
            INSERT INTO item_daily_counts (item, day, count) VALUES (\(item), \(day), \(Int64(count)))
            ON CONFLICT (item, day) DO UPDATE SET count = item_daily_counts.count + excluded.count
            """)
    }

    public func addAnonymousCounts(_ counts: [(item: String, day: Int64, count: Int)]) throws {
        guard !counts.isEmpty else { return }
        // One row per (item, day) as the server compares text, by its bytes: a statement's upsert may not touch a row
        // twice.
        var merged: [(item: String, day: Int64, count: Int64)] = []
        var at: [[UInt8]: [Int64: Int]] = [:]
        for c in counts {
            if let i = at[Array(c.item.utf8)]?[c.day] {
                merged[i].count += Int64(c.count)
            } else {
                at[Array(c.item.utf8), default: [:]][c.day] = merged.count
                merged.append((c.item, c.day, Int64(c.count)))
            }
        }
        let items = merged.map(\.item), days = merged.map(\.day), added = merged.map(\.count)
        try run(
            """
            INSERT INTO item_daily_counts (item, day, count) SELECT * FROM unnest(\(items)::text[], \(days)::int8[], \(added)::int8[])
            ON CONFLICT (item, day) DO UPDATE SET count = item_daily_counts.count + excluded.count
            """)
    }

    public func subtractAnonymousCount(item: String, day: Int64, count: Int) throws {
        try run("UPDATE item_daily_counts SET count = GREATEST(count - \(Int64(count)), 0) WHERE item = \(item) AND day = \(day)")
        try run("DELETE FROM item_daily_counts WHERE item = \(item) AND day = \(day) AND count = 0")
    }

    public func anonymousTotals() throws -> [(item: String, count: Int64)] {
        try rows("SELECT item, SUM(count)::BIGINT FROM item_daily_counts GROUP BY item").map { try $0.decode((String, Int64).self) }
    }

    public func anonymousCounts(sinceDay: Int64) throws -> [(item: String, day: Int64, count: Int64)] {
        try rows("SELECT item, day, count FROM item_daily_counts WHERE day >= \(sinceDay)").map { try $0.decode((String, Int64, Int64).self) }
    }

    public func setCatalogItem(id: String, body: String, available: Bool, updatedAt: Int64) throws {
        try run(
            """
            INSERT INTO items (id, body, available, updated_at) VALUES (\(id), \(body), \(available), \(updatedAt))
            ON CONFLICT (id) DO UPDATE SET body = excluded.body, available = excluded.available, updated_at = excluded.updated_at
            """)
    }

    public func catalogBodies() throws -> [String] {
        try rows("SELECT body FROM items ORDER BY id").map { try $0.decode(String.self) }
    }

    public func catalogItemIDs() throws -> [String] {
        try rows("SELECT id FROM items ORDER BY id").map { try $0.decode(String.self) }
    }
}

extension PostgresTransaction: DeliveryRepository {
    public var statementsAreRoundTrips: Bool { true }

    public func recordDelivery(token: String, key: String, at: Int64) throws -> Bool {
        try run("INSERT INTO deliveries (token, key, at) VALUES (\(token), \(key), \(at)) ON CONFLICT DO NOTHING") == 1
    }

    public func deliveryRecorded(token: String, anyOf keys: [String]) throws -> Bool {
        guard !keys.isEmpty else { return false }
        return try value("SELECT EXISTS(SELECT 1 FROM deliveries WHERE token = \(token) AND key = ANY(\(keys)))", as: Bool.self) ?? false
    }

    public func recordedDeliveries(among keys: [DeliveryKey]) throws -> Set<DeliveryKey> {
        guard !keys.isEmpty else { return [] }
        let tokens = keys.map(\.token), names = keys.map(\.key)
        return Set(
            try rows(
                """
                SELECT d.token, d.key FROM deliveries d JOIN unnest(\(tokens)::text[], \(names)::text[]) AS u(t, k) ON d.token = u.t AND d.key = u.k
                """
            ).map { row in
                let (token, key) = try row.decode((String, String).self)
                return DeliveryKey(token: token, key: key)
            })
    }

    public func recordDeliveries(_ keys: [(key: DeliveryKey, at: Int64)]) throws {
        guard !keys.isEmpty else { return }
        let tokens = keys.map(\.key.token), names = keys.map(\.key.key), times = keys.map(\.at)
        try run(
            """
            INSERT INTO deliveries (token, key, at) SELECT * FROM unnest(\(tokens)::text[], \(names)::text[], \(times)::int8[])
            ON CONFLICT DO NOTHING
            """)
    }

    public func deleteDelivery(token: String, key: String) throws {
        try run("DELETE FROM deliveries WHERE token = \(token) AND key = \(key)")
    }

    public func deleteDeliveries(token: String) throws {
        try run("DELETE FROM deliveries WHERE token = \(token)")
    }

    public func deleteDeliveries(before cutoff: Int64) throws -> Int {
        try run("DELETE FROM deliveries WHERE at < \(cutoff)")
    }

    public func deliveriesRecorded(withPrefixes prefixes: [String]) throws -> Bool {
        guard !prefixes.isEmpty else { return false }
        let twos = prefixes.map { String($0.prefix(2)) }
        return try value("SELECT EXISTS(SELECT 1 FROM deliveries WHERE substr(key, 1, 2) = ANY(\(twos)))", as: Bool.self) ?? false
    }
}

extension PostgresTransaction: SourceQualityRepository {
    public func qualitySourceExists(_ source: String) throws -> Bool {
        try value("SELECT EXISTS(SELECT 1 FROM source_quality WHERE source = \(source))", as: Bool.self) ?? false
    }

    public func qualitySourceCount() throws -> Int {
        Int(try value("SELECT COUNT(*) FROM source_quality", as: Int64.self) ?? 0)
    }

    public func addQuality(_ d: SourceQualityLog.Delta, source: String, day: Int64?) throws {
        try run(
            """
            INSERT INTO source_quality (source, events, accepted, rejected, duplicates, outliers, completeness_sum, last_event)
            VALUES (\(source), \(Int64(d.events)), \(Int64(d.accepted)), \(Int64(d.rejected)), \(Int64(d.duplicates)), \(Int64(d.outliers)),
                \(d.completenessSum), \(d.lastEvent))
            ON CONFLICT (source) DO UPDATE SET events = source_quality.events + excluded.events,
                accepted = source_quality.accepted + excluded.accepted, rejected = source_quality.rejected + excluded.rejected,
                duplicates = source_quality.duplicates + excluded.duplicates, outliers = source_quality.outliers + excluded.outliers,
                completeness_sum = source_quality.completeness_sum + excluded.completeness_sum,
                last_event = GREATEST(source_quality.last_event, excluded.last_event)
            """)
        guard let day else { return }
        try run(
            """
            INSERT INTO source_quality_daily (source, day, events, rejected, duplicates, completeness_sum)
            VALUES (\(source), \(day), \(Int64(d.events)), \(Int64(d.rejected)), \(Int64(d.duplicates)), \(d.completenessSum))
            ON CONFLICT (source, day) DO UPDATE SET events = source_quality_daily.events + excluded.events,
                rejected = source_quality_daily.rejected + excluded.rejected, duplicates = source_quality_daily.duplicates + excluded.duplicates,
                completeness_sum = source_quality_daily.completeness_sum + excluded.completeness_sum
            """)
    }

    public func qualityDays(since: Int64) throws -> [SourceQualityLog.Day] {
        try rows("SELECT source, day, events, rejected, duplicates FROM source_quality_daily WHERE day >= \(since) ORDER BY source, day").map {
            let (source, day, events, rejected, duplicates) = try $0.decode((String, Int64, Int, Int, Int).self)
            return SourceQualityLog.Day(source: source, day: day, events: events, rejected: rejected, duplicates: duplicates)
        }
    }

    public func qualityTotals() throws -> [(source: String, totals: SourceQualityLog.Delta)] {
        try rows(
            """
            SELECT source, events, accepted, rejected, duplicates, outliers, completeness_sum, last_event FROM source_quality ORDER BY source
            """
        ).map { row in
            let (source, events, accepted, rejected, duplicates, outliers, completeness, last) = try row.decode(
                (String, Int, Int, Int, Int, Int, Double, Int64?).self)
            var d = SourceQualityLog.Delta()
            d.events = events
            d.accepted = accepted
            d.rejected = rejected
            d.duplicates = duplicates
            d.outliers = outliers
            d.completenessSum = completeness
            d.lastEvent = last
            return (source, d)
        }
    }
}

extension PostgresTransaction: PrincipalRepository {
    public func principalExists(name: String) throws -> Bool {
        try value("SELECT 1 FROM principals WHERE name = \(name)", as: Int32.self) != nil
    }

    public func insertPrincipal(_ p: PrincipalRow) throws {
        try run(
            """
            INSERT INTO principals (name, role, namespace, key_hash, created_at, origins, revoked_at)
            VALUES (\(p.name), \(p.role), \(p.namespace), \(p.keyHash.hexString), \(p.createdAt), \(p.origins), \(p.revokedAt))
            """)
    }

    public func revokePrincipal(name: String, at: Int64) throws -> Int {
        try run("UPDATE principals SET revoked_at = \(at) WHERE name = \(name) AND revoked_at IS NULL")
    }

    public func principals() throws -> [PrincipalRow] {
        try rows("SELECT \(unescaped: Self.principalColumns) FROM principals ORDER BY name").map(Self.principalRow)
    }

    public func activePrincipal(name: String) throws -> PrincipalRow? {
        try rows("SELECT \(unescaped: Self.principalColumns) FROM principals WHERE name = \(name) AND revoked_at IS NULL").first.map(
            Self.principalRow)
    }

    public func principal(keyHash: [UInt8]) throws -> PrincipalRow? {
        try rows("SELECT \(unescaped: Self.principalColumns) FROM principals WHERE key_hash = \(keyHash.hexString)").first.map(Self.principalRow)
    }

    static let principalColumns = "name, role, namespace, origins, key_hash, created_at, revoked_at"

    static func principalRow(_ row: PostgresRow) throws -> PrincipalRow {
        let (name, role, namespace, origins, keyHash, created, revoked) = try row.decode((String, String, String, String, String, Int64, Int64?).self)
        return PrincipalRow(
            name: name, role: role, namespace: namespace, origins: origins, keyHash: [UInt8](hexString: keyHash) ?? [], createdAt: created,
            revokedAt: revoked)
    }
}

extension PostgresTransaction: ExperimentCountRepository {
    public func addExperimentCount(experiment: String, variant: String, metric: String, count: Int) throws {
        try run(
            """
            INSERT INTO experiment_counts (experiment, variant, metric, count) VALUES (\(experiment), \(variant), \(metric), \(Int64(count)))
            ON CONFLICT (experiment, variant, metric) DO UPDATE SET count = experiment_counts.count + excluded.count
            """)
    }

    public func experimentCounts(experiment: String) throws -> [(variant: String, metric: String, count: Int)] {
        try rows("SELECT variant, metric, count FROM experiment_counts WHERE experiment = \(experiment)").map {
            try $0.decode((String, String, Int).self)
        }
    }
}

extension PostgresTransaction: BanditRepository {
    public func savedBandits() throws -> [String: [UInt8]] {
        try rows("SELECT campaign, state FROM promotion_bandits").reduce(into: [:]) {
            let (campaign, state) = try $1.decode((String, ByteBuffer).self)
            $0[campaign] = state.bytes
        }
    }

    public func saveBandit(campaign: String, state: [UInt8], at: Int64) throws {
        try run(
            """
            INSERT INTO promotion_bandits (campaign, state, saved_at) VALUES (\(campaign), \(Bytes(state)), \(at))
            ON CONFLICT (campaign) DO UPDATE SET state = excluded.state, saved_at = excluded.saved_at
            """)
    }
}

extension PostgresTransaction: ModelRepository {
    public func insertModelPart(version: String, index: Int, bytes: [UInt8]) throws {
        try run("INSERT INTO model_parts (version, part, bytes) VALUES (\(version), \(index), \(Bytes(bytes)))")
    }

    public func publishModel(_ model: PublishedModel, replacing expected: String?) throws -> [String]? {
        // Under the writer lock every write transaction takes: nobody publishes between this read and the update.
        guard try value("SELECT version FROM published_model", as: String.self) == expected else { return nil }
        let others = try rows("SELECT DISTINCT version FROM model_parts WHERE version <> \(model.version)").map { try $0.decode(String.self) }
        try run(
            """
            INSERT INTO published_model (only_row, version, trained_at, generation, parts)
            VALUES (1, \(model.version), \(model.trainedAt), \(model.generation), \(model.parts))
            ON CONFLICT (only_row) DO UPDATE SET version = excluded.version, trained_at = excluded.trained_at,
                generation = excluded.generation, parts = excluded.parts
            """)
        return others
    }

    public func publishedModel() throws -> PublishedModel? {
        try rows("SELECT version, trained_at, generation, parts FROM published_model").first.map {
            let (version, trainedAt, generation, parts) = try $0.decode((String, Int64, Int64, Int).self)
            return PublishedModel(version: version, trainedAt: trainedAt, generation: generation, parts: parts)
        }
    }

    public func deleteModelParts(of version: String, limit: Int) throws -> Int {
        try run(
            """
            DELETE FROM model_parts WHERE (version, part) IN
                (SELECT version, part FROM model_parts WHERE version = \(version) LIMIT \(limit))
            """)
    }

    public func modelPart(version: String, index: Int) throws -> [UInt8]? {
        try rows("SELECT bytes FROM model_parts WHERE version = \(version) AND part = \(index)").first.map { try $0.decode(ByteBuffer.self).bytes }
    }
}

extension PostgresTransaction: OperationalTransaction {}
