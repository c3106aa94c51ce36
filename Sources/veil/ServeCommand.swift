import ArgumentParser
import Foundation
import Gateway
import Hummingbird
import Logging

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "Run the HTTP gateway.")

    @OptionGroup var common: CommonOptions
    @Option(help: "Address to bind.") var host = "127.0.0.1"
    @Option(help: "Port to bind (0 picks a free one).") var port = 8080
    @Option(help: "Seconds between scheduled retrains (0 = never).") var retrainInterval: Double = 3600
    @Option(help: "Seconds between retention runs (0 = never).") var retentionInterval: Double = 86_400
    @Option(help: "Seconds a recommendation list stays cached.") var cacheTTL: Double = 30
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel = "info"

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0...65535") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level '\(logLevel)'") }
    }

    func run() async throws {
        var logger = Logger(label: "veil")
        logger.logLevel = Logger.Level(rawValue: logLevel)!
        let service = try openService(common, cacheTTL: cacheTTL, logger: logger)
        if let model = try? service.train(), model.users > 0 {
            logger.info("model trained at start", metadata: ["model_version": "\(model.version)", "users": "\(model.users)"])
        }
        var config = ServerConfiguration()
        config.host = host
        config.port = port
        config.retrainInterval = retrainInterval
        config.retentionInterval = retentionInterval
        let app = GatewayServer.application(service: service, configuration: config) { port in
            print("veil listening on http://\(host):\(port)")
        }
        try await app.runService()
    }
}

/// Opens a service, turning the modules' errors into one-line messages with the fix.
func openService(_ common: CommonOptions, cacheTTL: Double = 30, logger: Logger = Logger(label: "veil")) throws -> VeilService {
    do {
        return try VeilService(paths: common.paths, passphrase: common.passphrase, cacheTTL: cacheTTL, logger: logger)
    } catch let error as any CustomStringConvertible & Error {
        throw CLIError(message: "\(error)")
    }
}

/// A one-line failure with its fix, printed without the usage text (which a ValidationError would add).
struct CLIError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
