import ArgumentParser
import Foundation
import Gateway

/// The options every state-touching command shares, so that instances can live side by side.
struct CommonOptions: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "Directory of the databases.")
    var dataDirectory: String = "./data"

    @Option(name: .customLong("keys"), help: "Key directory (created by `veil keys init`).")
    var keysDirectory: String = "./Keys"

    @Option(name: .customLong("policies"), help: "Policy directory.")
    var policiesDirectory: String = "./Policies"

    var paths: RuntimePaths {
        RuntimePaths(dataDirectory: dataDirectory, keysDirectory: keysDirectory, policiesDirectory: policiesDirectory)
    }

    /// The passphrase for passphrase-derived master keys; read once, here, and passed on.
    var passphrase: String? {
        ProcessInfo.processInfo.environment["VEIL_PASSPHRASE"].flatMap { $0.isEmpty ? nil : $0 }
    }
}
