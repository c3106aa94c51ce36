import Audit
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// How `veil serve` listens and schedules its background work.
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// Retrain from the feature store this often (0 = never); the new model is swapped in atomically.
    public var retrainInterval: TimeInterval = 3600
    /// Run retention this often (0 = never); the first run happens at start.
    public var retentionInterval: TimeInterval = 86_400
    public init() {}
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

    static func retrain(_ service: VeilService, every interval: TimeInterval) -> PeriodicService {
        PeriodicService(interval: interval, runAtStart: false) {
            do {
                let model = try service.train()
                service.logger.info("retrained", metadata: ["model_version": "\(model.version)"])
            } catch {
                service.logger.error("scheduled retrain failed")
            }
        }
    }

    static func retention(_ service: VeilService, every interval: TimeInterval) -> PeriodicService {
        PeriodicService(interval: interval, runAtStart: true) {
            do {
                let report = try await service.runRetention()
                service.logger.info("retention ran", metadata: ["interactions_deleted": "\(report.interactionsDeleted)", "lapsed_shredded": "\(report.lapsedConsentsShredded)"])
            } catch {
                service.logger.error("retention run failed")
            }
        }
    }
}

/// Signs a final audit checkpoint once the server has stopped taking requests.
struct AuditFlushService: Service {
    let service: VeilService

    func run() async throws {
        try? await gracefulShutdown()
        if let cp = try await service.audit.checkpoint() {
            service.logger.info("audit checkpoint signed at shutdown", metadata: ["sequence": "\(cp.sequence)"])
        }
    }
}

public enum GatewayServer {
    /// Builds the application (router, services) without running it.
    public static func application(service: VeilService, configuration: ServerConfiguration, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in })
        -> some ApplicationProtocol
    {
        Application(
            router: GatewayRouter.build(service: service),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "veil"),
            services: [PeriodicService.retrain(service, every: configuration.retrainInterval),
                       PeriodicService.retention(service, every: configuration.retentionInterval), AuditFlushService(service: service)],
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: service.logger)
    }
}
