import ArgumentParser
import Foundation
import PostgresStorage
import Recommender
import VeilCore
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
    @Option(help: "Seconds a client has to send a complete request head, from the connect or the request's first byte (default 10).")
    var headerTimeout: Double?
    @Option(help: "Seconds a client has to send a request's whole body, from the arrival of its head (default 30).")
    var bodyTimeout: Double?
    @Option(help: "Seconds an idle keep-alive connection stays open between requests (default 75).") var idleTimeout: Double?
    @Option(help: "Open connections at most; more wait in the listen backlog until one closes (default 4096).") var maxConnections: Int?

    func validate() throws {
        if let port, !(0...65535).contains(port) { throw ValidationError("--port must be 0...65535") }
        if let logLevel, Logger.Level(rawValue: logLevel) == nil { throw ValidationError("unknown --log-level '\(logLevel)'") }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        let timeouts = ServerConfiguration.timeoutRange, connections = ServerConfiguration.maxConnectionsRange
        if let headerTimeout, !timeouts.contains(headerTimeout) {
            throw ValidationError("--header-timeout must be a number of seconds from \(timeouts.lowerBound) to \(timeouts.upperBound)")
        }
        if let bodyTimeout, !timeouts.contains(bodyTimeout) {
            throw ValidationError("--body-timeout must be a number of seconds from \(timeouts.lowerBound) to \(timeouts.upperBound)")
        }
        if let idleTimeout, !timeouts.contains(idleTimeout) {
            throw ValidationError("--idle-timeout must be a number of seconds from \(timeouts.lowerBound) to \(timeouts.upperBound)")
        }
        if let maxConnections, !connections.contains(maxConnections) {
            throw ValidationError("--max-connections must be a whole number from \(connections.lowerBound) to \(connections.upperBound)")
        }
    }

    func run() async throws {
        let config = try common.configuration()
        var logger = Logger(label: "veil")
        logger.logLevel = Logger.Level(rawValue: logLevel ?? config.logLevel ?? "info")!
        let service = try openService(common, cacheTTL: cacheTTL, logger: logger)
        if config.sharedDatabase, !(service.store is PostgresStore) {
            throw CLIError(message: "storage.gateways: several needs a PostgreSQL database (storage.url, --database-url or VEIL_DATABASE_URL)")
        }
        if config.sharedDatabase, config.auditLogName == nil {
            throw CLIError(message: "storage.gateways: several needs audit.log_name, a name of this gateway's own (gw1, gw2, …) for its audit log")
        }
        if let postgres = service.store as? PostgresStore {
            do { try postgres.claimGateway() } catch { throw CLIError(message: "\(error)") }
        }
        if let shared = service.sharedAudit {
            do { try await shared.claim() } catch { throw CLIError(message: "\(error)") }
        }
        service.training.trainAtStart()
        var server = ServerConfiguration()
        server.host = host ?? config.host ?? server.host
        server.port = port ?? config.port ?? server.port
        server.retrainInterval = retrainInterval ?? config.retrainInterval ?? server.retrainInterval
        server.retentionInterval = retentionInterval ?? config.retentionInterval ?? server.retentionInterval
        server.headerTimeout = headerTimeout ?? config.headerTimeout ?? server.headerTimeout
        server.bodyTimeout = bodyTimeout ?? config.bodyTimeout ?? server.bodyTimeout
        server.idleTimeout = idleTimeout ?? config.idleTimeout ?? server.idleTimeout
        server.maxConnections = maxConnections ?? config.maxConnections ?? server.maxConnections
        ensureOpenFiles(for: server.maxConnections, logger: logger)
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
        // The database's connections and event loop end with the server (a live event loop would keep the process).
        defer { (service.store as? PostgresStore)?.close() }
        do {
            try await app.runService()
        } catch {
            if let problem = GatewayServer.listenProblem(error, configuration: server) { throw CLIError(message: problem) }
            throw error
        }
    }
}

/// The connection cap protects nothing if the process runs out of file descriptors first: accepts, and the database's
/// own file opens, would fail. Each connection takes one descriptor; the databases, the listener and logs a few more.
/// A soft open-file limit below that is raised toward the hard limit (as Go does; shells often start at 1024), and
/// what is still too low is logged.
func ensureOpenFiles(for maxConnections: Int, logger: Logger) {
    var limit = rlimit()
    guard getrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0 else { return }
    let needed = rlim_t(maxConnections + 64)
    guard limit.rlim_cur < needed else { return }  // RLIM_INFINITY is the largest value: never below
    var raised = limit
    raised.rlim_cur = min(needed, limit.rlim_max)
    if raised.rlim_cur > limit.rlim_cur, setrlimit(RLIMIT_NOFILE_VALUE, &raised) == 0 { limit = raised }
    if limit.rlim_cur < needed {
        logger.warning(
            "the open-file limit is below the connection cap: near the cap, accepts and file opens fail; raise ulimit -n or lower --max-connections",
            metadata: ["open_file_limit": "\(limit.rlim_cur)", "max_connections": "\(maxConnections)"])
    }
}

#if canImport(Glibc)
    private let RLIMIT_NOFILE_VALUE = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
#else
    private let RLIMIT_NOFILE_VALUE = RLIMIT_NOFILE
#endif

/// Opens a service with the configuration file's settings, turning the modules' errors into one-line messages
/// with the fix.
func openService(
    _ common: CommonOptions, cacheTTL: Double? = nil, logger: Logger = Logger(label: "veil"), trainingProgress: ProgressReporter = .silent
) throws -> VeilService {
    let config = try common.configuration()
    do {
        let paths = try common.paths()
        return try VeilService(
            paths: paths, store: try Backend.open(common), passphrase: common.passphrase, cacheTTL: cacheTTL ?? config.cacheTTL ?? 30,
            checkpointInterval: Int64(config.auditHeadEveryEntries),
            rateLimits: config.rateLimits, serving: config.serving, ingestion: config.ingestion, quality: config.quality,
            experiments: config.experiments, canary: config.canary, campaigns: config.campaigns,
            unlearnWithin: config.unlearnWithin ?? 60, rechooseWithin: config.rechooseWithin ?? 3600, auditFullSync: config.auditSync == "full",
            checkpointMaxAge: .seconds(config.auditHeadMaxAgeSeconds), auditLogName: config.auditLogName, logger: logger,
            trainingProgress: trainingProgress)
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
