import Foundation
import GRDB
import Persistence
import Storage
import Vault

/// The API principals: names, roles, namespaces, origins and keyed hashes of their keys.
public struct PrincipalTables: MigrationSet {
    public init() {}
    public func register(in migrator: inout DatabaseMigrator) {
        migrator.registerMigration("gateway.v1.principals") { db in
            try db.execute(
                sql: """
                    CREATE TABLE principals (
                        name TEXT PRIMARY KEY NOT NULL,
                        role TEXT NOT NULL,
                        namespace TEXT NOT NULL,
                        key_hash TEXT NOT NULL UNIQUE,
                        created_at INTEGER NOT NULL,
                        revoked_at INTEGER
                    ) WITHOUT ROWID
                    """)
        }
        // A browser key's origins, space-separated; empty for every other key.
        migrator.registerMigration("gateway.v2.principal_origins") { db in
            try db.execute(sql: "ALTER TABLE principals ADD COLUMN origins TEXT NOT NULL DEFAULT ''")
        }
    }
}

extension Database: PrincipalRepository {
    public func principalExists(name: String) throws -> Bool {
        try Bool.fetchOne(self, sql: "SELECT 1 FROM principals WHERE name = ?", arguments: [name]) == true
    }

    public func insertPrincipal(_ p: PrincipalRow) throws {
        try execute(
            sql: "INSERT INTO principals (name, role, namespace, key_hash, created_at, origins, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            arguments: [p.name, p.role, p.namespace, p.keyHash.hexString, p.createdAt, p.origins, p.revokedAt])
    }

    public func revokePrincipal(name: String, at: Int64) throws -> Int {
        try execute(sql: "UPDATE principals SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", arguments: [at, name])
        return changesCount
    }

    public func principals() throws -> [PrincipalRow] {
        try Row.fetchAll(self, sql: "SELECT * FROM principals ORDER BY name").map(Self.principalRow)
    }

    public func activePrincipal(name: String) throws -> PrincipalRow? {
        try Row.fetchOne(cachedStatement(sql: "SELECT * FROM principals WHERE name = ? AND revoked_at IS NULL"), arguments: [name])
            .map(Self.principalRow)
    }

    public func principal(keyHash: [UInt8]) throws -> PrincipalRow? {
        try Row.fetchOne(cachedStatement(sql: "SELECT * FROM principals WHERE key_hash = ?"), arguments: [keyHash.hexString]).map(Self.principalRow)
    }

    static func principalRow(_ row: Row) -> PrincipalRow {
        PrincipalRow(
            name: row["name"], role: row["role"], namespace: row["namespace"], origins: row["origins"],
            keyHash: [UInt8](hexString: row["key_hash"]) ?? [], createdAt: row["created_at"], revokedAt: row["revoked_at"])
    }
}

/// Experiment counters: aggregates per experiment, variant and metric.
public struct ExperimentTables: MigrationSet {
    public init() {}
    public func register(in migrator: inout DatabaseMigrator) {
        migrator.registerMigration("experiments.v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE experiment_counts (
                        experiment TEXT NOT NULL,
                        variant TEXT NOT NULL,
                        metric TEXT NOT NULL,
                        count INTEGER NOT NULL,
                        PRIMARY KEY (experiment, variant, metric)
                    ) WITHOUT ROWID;
                    """)
        }
    }
}

extension Database: ExperimentCountRepository {
    public func addExperimentCount(experiment: String, variant: String, metric: String, count: Int) throws {
        try cachedStatement(
            sql: """
                INSERT INTO experiment_counts (experiment, variant, metric, count) VALUES (?, ?, ?, ?)
                ON CONFLICT(experiment, variant, metric) DO UPDATE SET count = count + excluded.count
                """
        ).execute(arguments: [experiment, variant, metric, count])
    }

    public func experimentCounts(experiment: String) throws -> [(variant: String, metric: String, count: Int)] {
        try Row.fetchAll(self, sql: "SELECT variant, metric, count FROM experiment_counts WHERE experiment = ?", arguments: [experiment])
            .map { ($0["variant"], $0["metric"], $0["count"]) }
    }
}

/// What each campaign's bandit learnt.
public struct BanditTables: MigrationSet {
    public init() {}
    public func register(in migrator: inout DatabaseMigrator) {
        migrator.registerMigration("promotions.v1.bandits") { db in
            try db.execute(
                sql: """
                    CREATE TABLE promotion_bandits (
                        campaign TEXT PRIMARY KEY,
                        state BLOB NOT NULL,
                        saved_at INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    """)
        }
    }
}

extension Database: BanditRepository {
    public func savedBandits() throws -> [String: [UInt8]] {
        try Row.fetchAll(self, sql: "SELECT campaign, state FROM promotion_bandits").reduce(into: [:]) {
            $0[$1["campaign"]] = Array($1["state"] as Data)
        }
    }

    public func saveBandit(campaign: String, state: [UInt8], at: Int64) throws {
        try execute(
            sql: """
                INSERT INTO promotion_bandits (campaign, state, saved_at) VALUES (?, ?, ?)
                ON CONFLICT(campaign) DO UPDATE SET state = excluded.state, saved_at = excluded.saved_at
                """, arguments: [campaign, Data(state), at])
    }
}

/// The published model, in sealed parts (see ``ModelRepository``).
public struct ModelTables: MigrationSet {
    public init() {}
    public func register(in migrator: inout DatabaseMigrator) {
        migrator.registerMigration("models.v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE model_parts (
                        version TEXT NOT NULL,
                        part INTEGER NOT NULL,
                        bytes BLOB NOT NULL,
                        PRIMARY KEY (version, part)
                    ) WITHOUT ROWID;
                    CREATE TABLE published_model (
                        only INTEGER PRIMARY KEY CHECK (only = 1),
                        version TEXT NOT NULL,
                        trained_at INTEGER NOT NULL,
                        generation INTEGER NOT NULL,
                        parts INTEGER NOT NULL
                    );
                    """)
        }
    }
}

extension Database: ModelRepository {
    public func insertModelPart(version: String, index: Int, bytes: [UInt8]) throws {
        try execute(sql: "INSERT INTO model_parts (version, part, bytes) VALUES (?, ?, ?)", arguments: [version, index, Data(bytes)])
    }

    public func publishModel(_ model: PublishedModel, replacing expected: String?) throws -> [String]? {
        guard try String.fetchOne(self, sql: "SELECT version FROM published_model") == expected else { return nil }
        let others = try String.fetchAll(self, sql: "SELECT DISTINCT version FROM model_parts WHERE version <> ?", arguments: [model.version])
        try execute(
            sql: "INSERT OR REPLACE INTO published_model (only, version, trained_at, generation, parts) VALUES (1, ?, ?, ?, ?)",
            arguments: [model.version, model.trainedAt, model.generation, model.parts])
        return others
    }

    public func publishedModel() throws -> PublishedModel? {
        try Row.fetchOne(self, sql: "SELECT version, trained_at, generation, parts FROM published_model").map {
            PublishedModel(version: $0["version"], trainedAt: $0["trained_at"], generation: $0["generation"], parts: $0["parts"])
        }
    }

    public func deleteModelParts(of version: String, limit: Int) throws -> Int {
        try execute(
            sql: "DELETE FROM model_parts WHERE (version, part) IN (SELECT version, part FROM model_parts WHERE version = ? LIMIT ?)",
            arguments: [version, limit])
        return changesCount
    }

    public func modelPart(version: String, index: Int) throws -> [UInt8]? {
        try Data.fetchOne(self, sql: "SELECT bytes FROM model_parts WHERE version = ? AND part = ?", arguments: [version, index]).map { Array($0) }
    }
}

extension Database: InvalidationRepository {
    /// One gateway serves a SQLite file: there is nobody to tell (commands beside it are seen at the caches' TTL).
    public func announce(_ invalidations: [Invalidation]) throws {}
    public func announcementGeneration() throws -> Int64 { 0 }
}

extension Database: OperationalTransaction {}

extension Store: OperationalStore {
    public func syncCommitted() async throws { try await syncWAL() }

    public func scrubAfterErasure() async -> ErasureScrub {
        switch await scrubWAL() {
        case .done: .done
        case .deferred(let reason): .deferred(reason: reason)
        }
    }

    public func isReachable() async -> Bool {
        (try? await pool.read { try Int.fetchOne($0, sql: "SELECT 1") }) == 1
    }

    public var isShared: Bool { false }

    public func watchInvalidations(_ report: @escaping @Sendable (InvalidationSignal) -> Void) async {}

    /// One process writes a SQLite file: the process's own retrain lock is the only one needed.
    public func asSoleTrainer<T>(patience: Double, _ body: () throws -> T) throws -> T? { try body() }
}

extension DatabaseError: BackendError {
    public var isDiskFull: Bool { resultCode == .SQLITE_FULL }
    public var loggableReason: String { "SQLite error \(resultCode): \(message ?? "no message")" }
}

/// Every table of the operational database, in the order the migrations were first shipped.
public enum OperationalSchema {
    /// Opens (and migrates) the operational database at `path`, with its key store in a file of its own.
    public static func open(path: String, keyStorePath: String) throws -> Store {
        // WAL checkpoints beside the writer: in the commit path they held up every ingestion commit.
        try Store(
            path: path, migrations: migrations,
            configuration: .init(
                fullSync: false, walAutocheckpointPages: 16_000, backgroundCheckpointInterval: 0.25,
                walCyclePages: 12_000, keyStorePath: keyStorePath))
    }

    public static var migrations: [any MigrationSet] {
        [
            SubjectKeyTables(), ConsentTables(), IdentityTables(), LinkTables(), FeatureTables(), DeliveryTables(), PrincipalTables(),
            SourceQualityTables(), ExperimentTables(), BanditTables(), ModelTables(),
        ]
    }
}
