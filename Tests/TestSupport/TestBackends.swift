import Foundation
import Persistence
import PostgresStorage
import SQLiteStorage
import Testing

/// The operational backends a test can run on. The suites that say so run on each; `VEIL_TEST_BACKEND=postgres`
/// runs the whole gateway suite on PostgreSQL (`make test` does both).
public enum TestBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    public var testDescription: String { rawValue }

    /// The backend the gateway suite's fixtures use: SQLite unless `VEIL_TEST_BACKEND=postgres`.
    public static var current: TestBackend {
        guard let name = ProcessInfo.processInfo.environment["VEIL_TEST_BACKEND"], !name.isEmpty else { return .sqlite }
        guard let backend = TestBackend(rawValue: name) else { fatalError("VEIL_TEST_BACKEND is sqlite or postgres, not '\(name)'") }
        return backend
    }

    /// The server PostgreSQL tests run on. A test that needs PostgreSQL and finds none fails with this message; it
    /// does not skip.
    public static func postgresURL() throws -> String {
        guard let url = ProcessInfo.processInfo.environment["VEIL_TEST_POSTGRES_URL"], !url.isEmpty else {
            throw MissingPostgres()
        }
        return url
    }

    /// A new, empty operational store: a SQLite file under `directory`, or a database of its own on the test server.
    public func makeStore(directory: String) throws -> any OperationalStore {
        switch self {
        case .sqlite:
            return try OperationalSchema.open(path: directory + "/veil.sqlite", keyStorePath: directory + "/keystore.sqlite")
        case .postgres:
            return try PostgresStore(settings: try Self.freshDatabase())
        }
    }

    /// Settings naming a new database on the test server.
    public static func freshDatabase() throws -> PostgresSettings {
        let base = try PostgresSettings(url: try postgresURL(), poolSize: 4)
        let name = "veil_t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(20)
        return try PostgresStore.createDatabase(String(name), using: base)
    }
}

public struct MissingPostgres: Error, CustomStringConvertible {
    public var description: String {
        "this test needs PostgreSQL: set VEIL_TEST_POSTGRES_URL (make test starts a scratch server with scripts/pg-scratch.sh)"
    }
}

/// PostgreSQL's own client tools (`pg_dump`, `psql`) of the newest server version installed, run as someone with
/// access to the database would run them.
public enum PostgresTools {
    /// Runs `tool` against `settings`' database as its user; returns the exit status, standard output and the end of
    /// standard error.
    public static func run(_ tool: String, _ settings: PostgresSettings, _ arguments: [String]) throws -> (status: Int32, output: Data, error: String)
    {
        let bin = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql"))?.sorted { (Int($0) ?? 0) < (Int($1) ?? 0) }.last.map {
            "/usr/lib/postgresql/\($0)/bin/\(tool)"
        }
        let (status, data, error) = try Spawn.run(
            bin ?? "/usr/bin/\(tool)", ["-h", settings.host, "-p", String(settings.port), "-U", settings.user, "-d", settings.database] + arguments)
        return (status, data, String(decoding: error.suffix(500), as: UTF8.self))
    }
}
