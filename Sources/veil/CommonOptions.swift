import ArgumentParser
import Foundation
import VeilCore
import Gateway

/// The options every state-touching command shares, so that instances can live side by side. Each path comes
/// from its flag, else from the configuration file, else from the default.
struct CommonOptions: ParsableArguments {
    @Option(name: .customLong("config"), help: "Configuration file (YAML, see veil.example.yaml); flags override it.")
    var configPath: String?

    @Option(name: .customLong("data-dir"), help: "Directory of the databases (default ./data).")
    var dataDirectory: String?

    @Option(name: .customLong("keys"), help: "Key directory, created by `veil keys init` (default ./Keys).")
    var keysDirectory: String?

    @Option(name: .customLong("policies"), help: "Policy directory (default ./Policies).")
    var policiesDirectory: String?

    @Option(
        name: .customLong("database-url"),
        help:
            "PostgreSQL as the operational database: postgres://user@host:5432/db[?sslmode=require] (else VEIL_DATABASE_URL, the configuration's storage, or the embedded SQLite file)."
    )
    var databaseURLOption: String?

    /// The PostgreSQL URL from the flag, else the environment (a password is better kept out of the command line).
    var databaseURL: String? {
        databaseURLOption ?? ProcessInfo.processInfo.environment["VEIL_DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The configuration file's settings (defaults when no file is given).
    func configuration() throws -> VeilConfiguration {
        guard let configPath else { return VeilConfiguration() }
        do {
            return try VeilConfiguration.load(path: configPath)
        } catch let error as ConfigurationError {
            throw CLIError(message: error.description)
        }
    }

    func paths() throws -> RuntimePaths {
        let config = try configuration()
        return RuntimePaths(
            dataDirectory: dataDirectory ?? config.dataDirectory ?? "./data",
            keysDirectory: keysDirectory ?? config.keysDirectory ?? "./Keys",
            policiesDirectory: policiesDirectory ?? config.policiesDirectory ?? "./Policies")
    }

    /// The passphrase for passphrase-derived master keys; read once, here, and passed on.
    var passphrase: String? {
        ProcessInfo.processInfo.environment["VEIL_PASSPHRASE"].flatMap { $0.isEmpty ? nil : $0 }
    }
}
