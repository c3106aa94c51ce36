import SQLiteStorage
import VeilCore

/// Where the command line chooses the storage backend: the embedded SQLite one, the only one built so far.
enum Backend {
    /// Opens (and migrates) the operational database of `paths`.
    static func open(_ paths: RuntimePaths) throws -> Store {
        try OperationalSchema.open(path: paths.operationalDatabase, keyStorePath: paths.keyStoreDatabase)
    }
}
