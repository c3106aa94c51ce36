import Audit
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOSSL
import Logging
import NIOCore
import ServiceLifecycle

/// How `veil serve` listens and schedules its background work.
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// Retrain from the feature store this often (0 = never); the new model is swapped in atomically.
    public var retrainInterval: TimeInterval = 3600
    /// Run retention this often (0 = never); the first run happens at start.
    public var retentionInterval: TimeInterval = 86_400
    /// Serve HTTPS with these PEM files; plain HTTP when nil.
    public var tls: TLSFiles?
    public init() {}

    public struct TLSFiles: Sendable, Equatable {
        public var certificateChain: String
        public var privateKey: String
        public init(certificateChain: String, privateKey: String) {
            self.certificateChain = certificateChain
            self.privateKey = privateKey
        }
    }
}

/// Runs a job every `interval` seconds as a `Service`, cancelled on graceful shutdown (retraining, retention).
struct PeriodicService: Service {
    let interval: TimeInterval
    /// Run once at start, before the first wait.
    let runAtStart: Bool
    let job: @Sendable () async -> Void

    func run() async throws {
        // A service that returns would stop the whole group: without a schedule, wait for shutdown instead.
        guard interval > 0 else {
            try? await gracefulShutdown()
            return
        }
        try? await cancelWhenGracefulShutdown {
            if runAtStart { await job() }
            while !Task.isCancelled {
                try await Task.sleep(for: .seconds(interval))
                await job()
            }
        }
    }

    /// A run that failed is logged with a reason an operator can act on and that names no data; one cut short by
    /// shutdown did not fail.
    static func logFailure(_ what: String, _ error: any Error, _ logger: Logger) {
        if error is CancellationError {
            logger.info("\(what) stopped by shutdown")
        } else {
            logger.error("\(what) failed", metadata: ["error": "\(loggableReason(error))"])
        }
    }

    static func retrain(_ service: VeilService, every interval: TimeInterval) -> PeriodicService {
        PeriodicService(interval: interval, runAtStart: false) {
            do {
                let model = try await service.trainOffThePool()
                service.logger.info("retrained", metadata: ["model_version": "\(model.version)"])
            } catch {
                logFailure("scheduled retrain", error, service.logger)
            }
        }
    }

    /// Flushes experiment counters and promotion bandits, and decides a running canary.
    static func experiments(_ service: VeilService, every interval: TimeInterval) -> PeriodicService {
        PeriodicService(interval: interval, runAtStart: false) {
            do {
                try service.experiments.flush(to: service.store)
                try await service.evaluateCanary()
            } catch {
                logFailure("experiment bookkeeping", error, service.logger)
            }
            // On its own: a failed save must not hold back the canary decision, nor the reverse.
            do {
                try service.promotions.save(to: service.store, at: service.now())
            } catch {
                logFailure("saving the promotion bandits", error, service.logger)
            }
        }
    }

    static func retention(_ service: VeilService, every interval: TimeInterval) -> PeriodicService {
        PeriodicService(interval: interval, runAtStart: true) {
            do {
                let report = try await service.runRetention()
                service.logger.info("retention ran", metadata: ["interactions_deleted": "\(report.interactionsDeleted)", "lapsed_shredded": "\(report.lapsedConsentsShredded)"])
            } catch {
                logFailure("retention run", error, service.logger)
            }
        }
    }
}

/// Saves experiment counters and promotion bandits and signs a final audit checkpoint once the server has stopped
/// taking requests.
struct AuditFlushService: Service {
    let service: VeilService

    func run() async throws {
        try? await gracefulShutdown()
        do {
            try service.experiments.flush(to: service.store)
        } catch {
            PeriodicService.logFailure("saving the experiment counters at shutdown", error, service.logger)
        }
        do {
            try service.promotions.save(to: service.store, at: service.now())
        } catch {
            PeriodicService.logFailure("saving the promotion bandits at shutdown", error, service.logger)
        }
        if let cp = try await service.audit.checkpoint() {
            service.logger.info("audit checkpoint signed at shutdown", metadata: ["sequence": "\(cp.sequence)"])
        }
    }
}

public enum GatewayServer {
    /// A certificate or key that cannot be used, named with the fix.
    public struct TLSError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Builds the application (router, services) without running it.
    public static func application(service: VeilService, configuration: ServerConfiguration, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in })
        throws -> some ApplicationProtocol
    {
        Application(
            router: GatewayRouter.build(service: service),
            server: try serverBuilder(configuration.tls),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "veil"),
            services: [PeriodicService.retrain(service, every: configuration.retrainInterval),
                       PeriodicService.retention(service, every: configuration.retentionInterval),
                       PeriodicService.experiments(service, every: 5), AuditFlushService(service: service)],
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: service.logger)
    }

    /// Why the server could not listen, as one line with the fix; nil when `error` is not about listening.
    public static func listenProblem(_ error: any Error, configuration: ServerConfiguration) -> String? {
        let place = "\(configuration.host):\(configuration.port)"
        if error is SocketAddressError.UnknownHost {
            return "cannot resolve the host '\(configuration.host)'; give --host an address of this machine (127.0.0.1, or 0.0.0.0 for every interface)"
        }
        guard let error = error as? IOError else { return nil }
        switch error.errnoCode {
        case EADDRINUSE: return "\(place) is already in use (another veil serve?); stop that process or choose another port with --port (0 picks a free one)"
        case EACCES: return "no permission to listen on \(place) (ports below 1024 need privileges); choose another port with --port"
        case EADDRNOTAVAIL: return "\(configuration.host) is not an address of this machine; use --host 127.0.0.1, or 0.0.0.0 for every interface"
        default: return nil
        }
    }

    static func serverBuilder(_ tls: ServerConfiguration.TLSFiles?) throws -> HTTPServerBuilder {
        guard let tls else { return .http1() }
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMFile(tls.certificateChain)
        } catch {
            throw TLSError(description: "cannot read a PEM certificate from \(tls.certificateChain); make one with the openssl command in the README")
        }
        guard !chain.isEmpty else { throw TLSError(description: "\(tls.certificateChain) holds no certificate") }
        do {
            key = try NIOSSLPrivateKey(file: tls.privateKey, format: .pem)
        } catch {
            throw TLSError(description: "cannot read a PEM private key from \(tls.privateKey) (it must not be passphrase-protected)")
        }
        var config = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        config.minimumTLSVersion = .tlsv12
        return try .tls(.http1(), tlsConfiguration: config)
    }
}
