import Audit
import Foundation
import Serving
import VeilCore
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOSSL
import Logging
import NIOCore
import NIOHTTPTypes
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
    /// Seconds a client has to deliver a complete request head: from the accept (TLS handshake included) for the first
    /// request of a connection, from its first byte for each later one. A client that trickles its head, or connects
    /// and sends nothing, is disconnected. Real clients send a head in one packet: 10 s leaves room for a slow mobile
    /// link and a handshake, yet makes holding a connection cost an attacker a new one every 10 s.
    public var headerTimeout: TimeInterval = 10
    /// Seconds a client has to deliver a request's whole body, from the arrival of its head to the body's end. Without
    /// it a body trickled a byte at a time (each byte restarts the idle timeout) holds a connection for ever, even after
    /// the handler has answered: the server reads a body to its end before the next request. Bodies are at most 1 MiB:
    /// 30 s still admits a 35 KB/s link.
    public var bodyTimeout: TimeInterval = 30
    /// Seconds a keep-alive connection may wait for its next request (and the longest pause within a request body)
    /// before it is closed. 75 s, as nginx: longer than the 60 s idle timeout of common proxies and load balancers, so
    /// the proxy closes an idle connection first and never sends a request on one the gateway is closing.
    public var idleTimeout: TimeInterval = 75
    /// Open connections at most; beyond it, new connections wait in the listen backlog until one closes. Far above the
    /// load scripts' 256 concurrent connections; keep the open-file limit (`ulimit -n`) above it.
    public var maxConnections = 4096
    public init() {}

    /// The accepted ranges, shared by the configuration file and the flags (a day at most: any longer timeout is no
    /// protection, and an unbounded one would overflow NIO's nanosecond clock).
    public static let timeoutRange: ClosedRange<Double> = 0.1...86_400
    public static let maxConnectionsRange: ClosedRange<Int> = 1...1_000_000

    public struct TLSFiles: Sendable, Equatable {
        public var certificateChain: String
        public var privateKey: String
        public init(certificateChain: String, privateKey: String) {
            self.certificateChain = certificateChain
            self.privateKey = privateKey
        }
    }
}

/// Watches what other gateways on a shared database announce, until shutdown (returns at once on SQLite).
struct ClusterSyncService: Service {
    let sync: ClusterSync

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            await sync.run()
            // A service that returns would stop the whole group: on a store no other gateway shares, wait for shutdown.
            try await gracefulShutdown()
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
                // On a shared database, a model another gateway trained in the last half period serves instead.
                let model = try await service.training.trainOffThePool(unlessPublished: .trainedWithin(interval / 2))
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
                try await service.flushExperimentCounts()
                try await service.review.evaluateCanary()
            } catch {
                logFailure("experiment bookkeeping", error, service.logger)
            }
            // On its own: a failed save must not hold back the canary decision, nor the reverse.
            do {
                try await service.savePromotionBandits()
            } catch {
                logFailure("saving the promotion bandits", error, service.logger)
            }
            do {
                try await service.flushRefusals()
            } catch {
                logFailure("recording refusals before authentication", error, service.logger)
            }
        }
    }

    /// Swaps in a model trained without the subjects whose data was deleted, within the configured delay.
    static func unlearning(_ service: VeilService, every interval: TimeInterval) -> PeriodicService {
        PeriodicService(interval: interval, runAtStart: false) {
            do {
                if try await service.training.unlearnIfDue() {
                    service.logger.info("unlearned", metadata: ["model_version": "\(service.models.versions.stable ?? "none")"])
                }
                if try await service.training.rechooseIfDue() {
                    service.logger.info(
                        "retrained to choose hyperparameters without unlearned subjects",
                        metadata: ["model_version": "\(service.models.versions.stable ?? "none")"])
                }
            } catch {
                logFailure("unlearning retrain", error, service.logger)
            }
        }
    }

    /// Keeps the audit query index close behind the log, off the request path.
    static func auditIndex(_ service: VeilService, every interval: TimeInterval) -> PeriodicService {
        PeriodicService(interval: interval, runAtStart: true) {
            do {
                try await offThePool { try service.audit.catchUpIndex() }
            } catch {
                logFailure("indexing the audit log", error, service.logger)
            }
        }
    }

    /// On a shared database: ships this gateway's audit log to it (``SharedAudit``), so that every gateway verifies
    /// and queries all the logs. A copy that diverged from the file is logged as an error each time: someone must look.
    static func auditShipping(_ service: VeilService, every interval: TimeInterval) -> PeriodicService {
        PeriodicService(interval: service.sharedAudit == nil ? 0 : interval, runAtStart: true) {
            do {
                try await service.sharedAudit?.shipPending()
            } catch {
                logFailure("shipping the audit log to the shared database", error, service.logger)
            }
        }
    }

    static func retention(_ service: VeilService, every interval: TimeInterval) -> PeriodicService {
        PeriodicService(interval: interval, runAtStart: true) {
            do {
                let report = try await service.retention.run()
                service.logger.info(
                    "retention ran",
                    metadata: ["interactions_deleted": "\(report.interactionsDeleted)", "lapsed_shredded": "\(report.lapsedConsentsShredded)"])
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
            try await service.flushRefusals(all: true)
        } catch {
            PeriodicService.logFailure("recording refusals before authentication at shutdown", error, service.logger)
        }
        do {
            try await service.flushExperimentCounts()
        } catch {
            PeriodicService.logFailure("saving the experiment counters at shutdown", error, service.logger)
        }
        do {
            try await service.savePromotionBandits()
        } catch {
            PeriodicService.logFailure("saving the promotion bandits at shutdown", error, service.logger)
        }
        if let cp = try await service.audit.checkpoint() {
            service.logger.info("audit tree head signed at shutdown", metadata: ["size": "\(cp.size)"])
        }
        do {
            try await service.sharedAudit?.shipPending()
        } catch {
            PeriodicService.logFailure("shipping the audit log at shutdown", error, service.logger)
        }
    }
}

public enum GatewayServer {
    /// A certificate or key that cannot be used, named with the fix.
    public struct TLSError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Builds the application (router, services) without running it.
    public static func application(
        service: VeilService, configuration: ServerConfiguration, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    )
        throws -> some ApplicationProtocol
    {
        Application(
            router: GatewayRouter.build(service: service, secureCookies: configuration.tls != nil),
            server: try serverBuilder(configuration, logger: service.logger),
            // Beyond the cap the server stops accepting: new connections wait in the kernel's backlog, not in memory.
            configuration: .init(
                address: .hostname(configuration.host, port: configuration.port), serverName: "veil",
                availableConnectionsDelegate: MaximumAvailableConnections(configuration.maxConnections, logger: service.logger)),
            services: [
                PeriodicService.retrain(service, every: configuration.retrainInterval),
                PeriodicService.retention(service, every: configuration.retentionInterval),
                PeriodicService.experiments(service, every: 5), PeriodicService.auditIndex(service, every: 2),
                PeriodicService.unlearning(service, every: 1), PeriodicService.auditShipping(service, every: 1),
                AuditFlushService(service: service), ClusterSyncService(sync: service.clusterSync),
            ],
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: service.logger)
    }

    /// Why the server could not listen, as one line with the fix; nil when `error` is not about listening.
    public static func listenProblem(_ error: any Error, configuration: ServerConfiguration) -> String? {
        let place = "\(configuration.host):\(configuration.port)"
        if error is SocketAddressError.UnknownHost {
            return
                "cannot resolve the host '\(configuration.host)'; give --host an address of this machine (127.0.0.1, or 0.0.0.0 for every interface)"
        }
        guard let error = error as? IOError else { return nil }
        switch error.errnoCode {
        case EADDRINUSE:
            return "\(place) is already in use (another veil serve?); stop that process or choose another port with --port (0 picks a free one)"
        case EACCES: return "no permission to listen on \(place) (ports below 1024 need privileges); choose another port with --port"
        case EADDRNOTAVAIL: return "\(configuration.host) is not an address of this machine; use --host 127.0.0.1, or 0.0.0.0 for every interface"
        default: return nil
        }
    }

    /// HTTP/1.1 with the slow-client limits: the header and body deadlines (`RequestDeadlineHandler`) and
    /// Hummingbird's idle timeout (between requests and within a body; it never cuts a handler that is still answering).
    static func serverBuilder(_ configuration: ServerConfiguration, logger: Logger) throws -> HTTPServerBuilder {
        let headerTimeout = TimeAmount.interval(configuration.headerTimeout)
        let bodyTimeout = TimeAmount.interval(configuration.bodyTimeout)
        let http1 = HTTP1Channel.Configuration(
            additionalChannelHandlers: [RequestDeadlineHandler(timeout: headerTimeout, bodyTimeout: bodyTimeout, logger: logger)],
            idleTimeout: .interval(configuration.idleTimeout))
        let builder = HTTPServerBuilder { responder in
            HeadTimedHTTP1Channel(base: HTTP1Channel(responder: responder, configuration: http1))
        }
        guard let tls = configuration.tls else { return builder }
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
        return try .tls(builder, tlsConfiguration: config)
    }
}

extension TimeAmount {
    /// Whole nanoseconds of `seconds` (checked against `ServerConfiguration.timeoutRange`, so it cannot overflow).
    fileprivate static func interval(_ seconds: TimeInterval) -> TimeAmount { .nanoseconds(Int64((seconds * 1e9).rounded())) }
}

/// HTTP/1.1 with a `RequestBytesObserver` in front of the HTTP decoder (behind TLS when there is TLS), so the header
/// timeout can start when a later request's first byte arrives.
struct HeadTimedHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value
    let base: HTTP1Channel

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(RequestBytesObserver())
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// Tells the connection's `RequestDeadlineHandler` that the client sent bytes; passes them on untouched.
final class RequestBytesObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    weak var deadlines: RequestDeadlineHandler?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        deadlines?.bytesArrived()
        context.fireChannelRead(data)
    }
}

/// The deadlines of a request, and the connection's end when a response comes before the request's body.
///
/// Head: closes a connection whose request head is not complete `timeout` after the connection was accepted, or after
/// the first byte of a later request arrived (slowloris: heads sent a byte at a time, or never finished). Between
/// requests, while no byte comes, the idle timeout applies instead. Bytes of the next request that arrive together
/// with the end of the previous one start no clock: that head is bounded by the idle timeout.
///
/// Body: closes a connection whose request body has not ended `bodyTimeout` after its head arrived (a body trickled,
/// or never sent), whether the handler is still reading it (it gets an error) or has answered and Hummingbird is
/// reading the rest before the next request. Once the body has ended, the handler is not timed.
///
/// One timer at most, armed when a read ends with a clock running: a request that arrives whole (the usual case)
/// schedules nothing.
///
/// A response whose head is written before its request's body ended (a 401, 403 or 413 answered early) says
/// `Connection: close`, and the connection is closed once that response is written and that body has ended (or the
/// body deadline passed): the client does not reuse it, and is not reset while still sending. Pipelined requests are
/// counted, so an answer to an earlier request is never taken for one to the request whose body is coming.
final class RequestDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// Which deadline runs.
    private enum Phase {
        /// Between requests, no byte of the next one yet (or only bytes that came with the previous one's end).
        case idle
        /// Waiting for a request head: since the accept, or since the first byte of a later request.
        case head
        /// The head is in, the body has not ended.
        case body
    }

    let timeout: TimeAmount
    let bodyTimeout: TimeAmount
    let logger: Logger
    private var phase = Phase.idle
    /// When the running phase's clock runs out (meaningless while `idle`).
    private var deadline = NIODeadline.distantFuture
    /// Armed for `deadline`; cancelled whenever the phase changes.
    private var timer: Scheduled<Void>?
    /// Request heads and ends read, non-informational response heads written (wrapping counts: only compared).
    private var requests = 0, ended = 0, responses = 0
    /// The request whose response began before its body ended: the connection closes once both are done.
    private var closeAfter: Int?
    private var closingResponseWritten = false
    private var context: ChannelHandlerContext?

    init(timeout: TimeAmount, bodyTimeout: TimeAmount, logger: Logger) {
        self.timeout = timeout
        self.bodyTimeout = bodyTimeout
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        (try? context.pipeline.syncOperations.handler(type: RequestBytesObserver.self))?.deadlines = self
        if context.channel.isActive { accepted() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        disarm()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        accepted()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        disarm()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var closeNow = false
        switch unwrapInboundIn(data) {
        case .head:
            requests &+= 1
            enter(.body, for: bodyTimeout)
        case .body:
            break
        case .end:
            ended &+= 1
            enter(.idle, for: nil)
            closeNow = ended == closeAfter && closingResponseWritten
        }
        context.fireChannelRead(data)
        if closeNow { context.close(promise: nil) }
    }

    /// A read ended: a clock still running gets its timer (the parts of a request that came whole have started and
    /// stopped their clocks already).
    func channelReadComplete(context: ChannelHandlerContext) {
        arm()
        context.fireChannelReadComplete()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var response) where response.status.kind != .informational:
            responses &+= 1
            // The answer to the latest request, whose body has not ended.
            if responses == requests, ended != requests, closeAfter == nil {
                closeAfter = requests
                response.headerFields[.connection] = "close"
                context.write(wrapOutboundOut(.head(response)), promise: promise)
            } else {
                context.write(data, promise: promise)
            }
        case .end where closeAfter != nil && !closingResponseWritten:
            // Closed once written: closing earlier would drop what is still queued.
            let written = promise ?? context.eventLoop.makePromise()
            written.futureResult.assumeIsolated().whenComplete { [self] _ in
                closingResponseWritten = true
                if ended == closeAfter { context.close(promise: nil) }
            }
            context.write(data, promise: written)
        default:
            context.write(data, promise: promise)
        }
    }

    /// The client sent bytes: when they begin a new request, its head's clock starts.
    func bytesArrived() {
        if phase == .idle { enter(.head, for: timeout) }
    }

    private func accepted() {
        guard phase == .idle, timer == nil else { return }
        enter(.head, for: timeout)
        arm()  // no read may ever come
    }

    /// Changes phase; `timeout` starts the new phase's clock now.
    private func enter(_ next: Phase, for timeout: TimeAmount?) {
        disarm()
        phase = next
        if let timeout { deadline = .now() + timeout }
    }

    private func arm() {
        guard phase != .idle, timer == nil, let context else { return }
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            timer = nil
            let what = phase == .head ? "request head" : "request body"
            let limit = phase == .head ? timeout : bodyTimeout
            logger.debug("closed a connection whose \(what) did not arrive in time", metadata: ["timeout_ms": "\(limit.nanoseconds / 1_000_000)"])
            context.close(promise: nil)
        }
    }

    private func disarm() {
        timer?.cancel()
        timer = nil
    }
}
