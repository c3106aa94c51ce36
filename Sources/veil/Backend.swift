import Foundation
import Gateway
import Persistence
import PostgresStorage
import SQLiteStorage
import VeilCore

/// Where the command line chooses the storage backend: the embedded SQLite file in the data directory, or PostgreSQL
/// when a `postgres://` URL is given (`--database-url`, `VEIL_DATABASE_URL`, or `storage:` in the configuration).
enum Backend {
    /// Opens (and migrates) the operational database the options name.
    static func open(_ common: CommonOptions) throws -> any OperationalStore {
        let config = try common.configuration()
        guard let url = common.databaseURL ?? config.databaseURL else { return try open(try common.paths()) }
        do {
            var settings = try PostgresSettings(url: url, poolSize: config.databasePoolSize, statementTimeoutMs: config.databaseStatementTimeoutMs)
            settings.shared = config.sharedDatabase
            settings.keyRole = config.keyRole
            return try PostgresStore(settings: settings)
        } catch {
            throw CLIError(message: "\(error)")
        }
    }

    /// The embedded SQLite database of `paths` (the demo and the benchmarks, which keep everything in one directory).
    static func open(_ paths: RuntimePaths) throws -> Store {
        try OperationalSchema.open(path: paths.operationalDatabase, keyStorePath: paths.keyStoreDatabase)
    }
}
