import ArgumentParser
import Foundation
import Gateway
import Hummingbird
import Logging

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Run the HTTP gateway.",
        discussion: "Each setting comes from its flag, else from --config FILE, else from its default.")

    @OptionGroup var common: CommonOptions
    @Option(help: "Address to bind (default 127.0.0.1).") var host: String?
    @Option(help: "Port to bind; 0 picks a free one (default 8080).") var port: Int?
    @Option(help: "PEM certificate chain: serve HTTPS (with --tls-key).") var tlsCert: String?
    @Option(help: "PEM private key of the certificate.") var tlsKey: String?
    @Option(help: "Seconds between scheduled retrains, 0 = never (default 3600).") var retrainInterval: Double?
    @Option(help: "Seconds between retention runs, 0 = never (default 86400).") var retentionInterval: Double?
    @Option(help: "Seconds a recommendation list stays cached (default 30).") var cacheTTL: Double?
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (default info).") var logLevel: String?

    func validate() throws {
        if let port, !(0...65535).contains(port) { throw ValidationError("--port must be 0...65535") }
        if let logLevel, Logger.Level(rawValue: logLevel) == nil { throw ValidationError("unknown --log-level '\(logLevel)'") }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
    }

    func run() async throws {
        let config = try common.configuration()
        var logger = Logger(label: "veil")
        logger.logLevel = Logger.Level(rawValue: logLevel ?? config.logLevel ?? "info")!
        let service = try openService(common, cacheTTL: cacheTTL, logger: logger)
        service.trainAtStart()
        var server = ServerConfiguration()
        server.host = host ?? config.host ?? server.host
        server.port = port ?? config.port ?? server.port
        server.retrainInterval = retrainInterval ?? config.retrainInterval ?? server.retrainInterval
        server.retentionInterval = retentionInterval ?? config.retentionInterval ?? server.retentionInterval
        if let cert = tlsCert ?? config.tlsCertificate, let key = tlsKey ?? config.tlsKey {
            server.tls = ServerConfiguration.TLSFiles(certificateChain: cert, privateKey: key)
        }
        let scheme = server.tls == nil ? "http" : "https"
        let app: any ApplicationProtocol
        do {
            app = try GatewayServer.application(service: service, configuration: server) { [host = server.host] port in
                print("veil listening on \(scheme)://\(host):\(port)")
            }
        } catch let error as GatewayServer.TLSError {
            throw CLIError(message: error.description)
        }
        do {
            try await app.runService()
        } catch {
            if let problem = GatewayServer.listenProblem(error, configuration: server) { throw CLIError(message: problem) }
            throw error
        }
    }
}

/// Opens a service with the configuration file's settings, turning the modules' errors into one-line messages
/// with the fix.
func openService(_ common: CommonOptions, cacheTTL: Double? = nil, logger: Logger = Logger(label: "veil")) throws -> VeilService {
    let config = try common.configuration()
    do {
        return try VeilService(paths: try common.paths(), passphrase: common.passphrase, cacheTTL: cacheTTL ?? config.cacheTTL ?? 30,
                               rateLimits: config.rateLimits, serving: config.serving, ingestion: config.ingestion, quality: config.quality,
                               experiments: config.experiments, canary: config.canary, campaigns: config.campaigns,
                               auditFullSync: config.auditSync == "full", logger: logger)
    } catch let error as any CustomStringConvertible & Error {
        throw CLIError(message: "\(error)")
    }
}

/// A logger for commands that print a report: only errors reach the terminal beside it.
func quietLogger() -> Logger {
    var logger = Logger(label: "veil")
    logger.logLevel = .error
    return logger
}

/// Prints `value` as one line of JSON with sorted keys (the `--json` form of the report commands).
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// A one-line failure with its fix, printed without the usage text (which a ValidationError would add).
struct CLIError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
