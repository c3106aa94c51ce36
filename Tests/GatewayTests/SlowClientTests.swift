import Dispatch
import Foundation
import VeilCore
import Gateway
import Hummingbird
import Synchronization
import Testing
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Slow and idle clients cannot hold connections (issue #21, item 12): a request head must arrive within the header
/// timeout, a request body within the body timeout, an idle keep-alive connection is closed after the idle timeout,
/// and connections beyond the cap wait in the backlog. Each test runs a real server on a free port of 127.0.0.1 and
/// talks to it over plain sockets; every wait is bounded, and the blocking socket calls run on a dispatch thread, never
/// on the pool that runs the server. Connections whose close is timed are watched all at once (`RawConnection.watch`),
/// so each close time is its own. The upper bounds leave room for a loaded two-core machine; the timeouts not under
/// test are 60 s, so a connection closed by the wrong one still fails. The tests run one at a time: their fixtures'
/// setup, all at once, would hold the two threads that run the handlers for seconds (the deadlines run on the event
/// loops and are not delayed, the answers are).
@Suite(.serialized) struct SlowClientTests {
    static let partialHead = "GET /health/live HTTP/1.1\r\nHost: x\r\n"
    static let fullRequest = "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    /// Seconds within which a connection under a 1 s timeout must be closed.
    static let closedBy: TimeInterval = 10

    static func post(key: String?, _ framing: String) -> String {
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + (key.map { "Authorization: Bearer \($0)\r\n" } ?? "") + framing
            + "\r\n"
    }
    static let events =
        #"{"events": [{"id": "slow-1", "kind": "page_view", "subject": "slow@example.com", "timestamp": "2026-11-20T10:00:00Z", "source": "web", "item": "sku-1"}]}"#

    @Test func halfSentRequestsSilentAndIdleConnectionsAreAllClosed() async throws {
        try await withServer(headerTimeout: 1, idleTimeout: 1) { port, _ in
            let (keepAliveStatus, closedAfter, freshStatus) = try await blocking {
                let start = Date()
                let halfSent = try (0..<50).map { _ in
                    let c = try RawConnection(port: port)
                    try c.send(Self.partialHead)
                    return c
                }
                let silent = try RawConnection(port: port)
                let keepAlive = try RawConnection(port: port)
                let keepAliveStatus = try keepAlive.request(Self.fullRequest)
                let all = halfSent + [silent, keepAlive]
                defer { all.forEach { $0.close() } }
                let closedAfter = RawConnection.watch(all, until: start.addingTimeInterval(Self.closedBy)).map { $0.closed?.timeIntervalSince(start) }
                // The server is alive and answers a complete request.
                let fresh = try RawConnection(port: port)
                defer { fresh.close() }
                return (keepAliveStatus, closedAfter, try fresh.request(Self.fullRequest))
            }
            #expect(keepAliveStatus == 200)
            let open = closedAfter.filter { $0 == nil }.count
            #expect(open == 0, "\(open) of \(closedAfter.count) connections still open \(Self.closedBy) s after connecting (timeouts 1 s)")
            // Closed by the timeouts, not at once for some other reason.
            let earliest = closedAfter.compactMap { $0 }.min() ?? 0
            #expect(earliest >= 0.8, "a connection was closed after \(earliest) s, before its 1 s timeout")
            #expect(freshStatus == 200)
        }
    }

    @Test func theHeaderTimeoutCutsSlowHeadsButNotIdleKeepAlive() async throws {
        try await withServer(headerTimeout: 1, idleTimeout: 60) { port, _ in
            let (statuses, secondAfter, trickleAfter, idleOpen, idleAgain) = try await blocking {
                // Each connection sends at once: one left waiting would rightly be cut by the header timeout.
                let idle = try RawConnection(port: port)
                defer { idle.close() }
                let first = try idle.request(Self.fullRequest)
                let secondHalfSent = try RawConnection(port: port)
                defer { secondHalfSent.close() }
                let second = try secondHalfSent.request(Self.fullRequest)

                // After a complete request, the next head's clock starts at its first byte; a head trickled a byte
                // every 200 ms never completes, and the trickle does not restart the clock. Both watched at once.
                let start = Date()
                try secondHalfSent.send(Self.partialHead)
                let trickle = try RawConnection(port: port)
                defer { trickle.close() }
                let watched = RawConnection.watch(
                    [secondHalfSent, trickle], until: start.addingTimeInterval(Self.closedBy),
                    trickling: [[], Array((Self.partialHead + String(repeating: "x", count: 100)).utf8)], every: 0.2)

                // Idle between requests is not a slow head: after at least 2.2 s without a byte, still open, and it
                // serves again.
                Thread.sleep(forTimeInterval: max(0, 2.2 - Date().timeIntervalSince(start)))
                let idleOpen = idle.isOpen
                return (
                    [first, second], watched[0].closed?.timeIntervalSince(start), watched[1].closed?.timeIntervalSince(start),
                    idleOpen, idleOpen ? try idle.request(Self.fullRequest) : nil
                )
            }
            #expect(statuses == [200, 200])
            #expect(
                secondAfter.map { (0.8...Self.closedBy).contains($0) } == true,
                "half-sent second head closed after \(secondAfter.map { "\($0) s" } ?? "never")")
            #expect(
                trickleAfter.map { (0.8...Self.closedBy).contains($0) } == true,
                "trickled head closed after \(trickleAfter.map { "\($0) s" } ?? "never")")
            #expect(idleOpen, "an idle keep-alive connection was closed by the header timeout")
            #expect(idleAgain == 200)
        }
    }

    @Test func theIdleTimeoutClosesKeepAliveConnections() async throws {
        try await withServer(headerTimeout: 60, idleTimeout: 1) { port, _ in
            let (status, closedAfter, freshStatus) = try await blocking {
                let idle = try RawConnection(port: port)
                defer { idle.close() }
                let status = try idle.request(Self.fullRequest)
                let answered = Date()
                let closedAfter = RawConnection.watch([idle], until: answered.addingTimeInterval(Self.closedBy))[0].closed?.timeIntervalSince(
                    answered)
                let fresh = try RawConnection(port: port)
                defer { fresh.close() }
                return (status, closedAfter, try fresh.request(Self.fullRequest))
            }
            #expect(status == 200)
            #expect(
                closedAfter.map { (0.8...Self.closedBy).contains($0) } == true,
                "idle keep-alive closed after \(closedAfter.map { "\($0) s" } ?? "never")")
            #expect(freshStatus == 200)
        }
    }

    /// The three ways a body meets its handler: `app` may write events (the handler reads the body); a
    /// `recommendation-client` may not (403 before the body); no key (401 before the body, the finding's attacker).
    static func posters(_ keys: [String: String]) -> [(who: String, key: String?)] {
        [("read by the handler", keys["app"]), ("answered 403 first", keys["recommendation-client"]), ("answered 401 first", nil)]
    }

    /// A body trickled a byte every 300 ms restarts the idle timeout with each byte, yet is cut by the body deadline:
    /// while the handler waits for it, and after the handler has answered, when the server would otherwise read the
    /// rest for ever. (On a loaded machine the answer may not be written before the deadline: then nothing is received.)
    @Test func theBodyTimeoutCutsTrickledBodies() async throws {
        try await withServer(headerTimeout: 60, idleTimeout: 60, bodyTimeout: 1) { port, keys in
            let posters = Self.posters(keys)
            let watched = try await blocking {
                let connections = try posters.map { _ in try RawConnection(port: port) }
                defer { connections.forEach { $0.close() } }
                let start = Date()
                for (c, poster) in zip(connections, posters) { try c.send(Self.post(key: poster.key, "Transfer-Encoding: chunked\r\n")) }
                let body = Array(String(repeating: "1\r\n{\r\n", count: 100).utf8)
                return RawConnection.watch(
                    connections, until: start.addingTimeInterval(6), trickling: Array(repeating: body, count: connections.count), every: 0.3
                )
                .map { ($0.closed?.timeIntervalSince(start), String(decoding: $0.received, as: UTF8.self)) }
            }
            for ((after, received), poster) in zip(watched, posters) {
                #expect(
                    after.map { (0.8...6).contains($0) } == true,
                    "trickled body \(poster.who) closed after \(after.map { "\($0) s" } ?? "never") (body timeout 1 s)")
                if poster.key != keys["app"], !received.isEmpty {
                    #expect(received.hasPrefix("HTTP/1.1 40"), "\(poster.who): \(received)")
                    #expect(received.lowercased().contains("connection: close"), "\(poster.who) without Connection: close: \(received)")
                }
            }
        }
    }

    /// A head whose body never comes (a length, or chunked) is closed, whether the handler waits or has answered.
    @Test func theBodyTimeoutCutsBodiesThatNeverCome() async throws {
        try await withServer(headerTimeout: 60, idleTimeout: 60, bodyTimeout: 1) { port, keys in
            let posters = Self.posters(keys)
            let closedAfter = try await blocking {
                let start = Date()
                let connections = try posters.flatMap { poster in
                    try ["Content-Length: 100\r\n", "Transfer-Encoding: chunked\r\n"].map { framing in
                        let c = try RawConnection(port: port)
                        try c.send(Self.post(key: poster.key, framing))
                        return c
                    }
                }
                defer { connections.forEach { $0.close() } }
                return RawConnection.watch(connections, until: start.addingTimeInterval(6)).map { $0.closed?.timeIntervalSince(start) }
            }
            #expect(closedAfter.count == 6)
            for (after, poster) in zip(closedAfter, posters.flatMap { [$0, $0] }) {
                #expect(
                    after.map { (0.8...6).contains($0) } == true,
                    "a POST without its body, \(poster.who), closed after \(after.map { "\($0) s" } ?? "never") (body timeout 1 s)")
            }
        }
    }

    /// Complete bodies are unaffected: sent with the head or a moment later, they are answered, and the connection
    /// stays open past the body timeout for its next request (the deadline ends with the body).
    @Test func completeBodiesAreAnsweredAndKeepTheConnection() async throws {
        try await withServer(headerTimeout: 60, idleTimeout: 60, bodyTimeout: 1) { port, keys in
            let appKey = keys["app"], forbiddenKey = keys["recommendation-client"]
            let (statuses, stillOpen, again) = try await blocking {
                let c = try RawConnection(port: port)
                defer { c.close() }
                let length = "Content-Length: \(Self.events.utf8.count)\r\n"
                let whole = try c.request(Self.post(key: appKey, length) + Self.events)
                try c.send(Self.post(key: appKey, length))
                Thread.sleep(forTimeInterval: 0.3)
                let split = try c.request(Self.events)
                let chunk = String(Self.events.utf8.count, radix: 16) + "\r\n" + Self.events + "\r\n0\r\n\r\n"
                let chunked = try c.request(Self.post(key: appKey, "Transfer-Encoding: chunked\r\n") + chunk)
                let forbidden = try c.request(Self.post(key: forbiddenKey, length) + Self.events)
                Thread.sleep(forTimeInterval: 1.5)
                let open = c.isOpen
                return ([whole, split, chunked, forbidden], open, open ? try c.request(Self.fullRequest) : nil)
            }
            #expect(statuses == [200, 200, 200, 403])
            #expect(stillOpen, "a keep-alive connection was closed after complete bodies")
            #expect(again == 200)
        }
    }

    /// An answer written before the request's body ended (403, 401) says `Connection: close`, and the connection is
    /// closed as soon as the body is in, not kept for the body deadline (60 s here) or the next request.
    @Test func anAnswerBeforeTheBodyClosesTheConnection() async throws {
        try await withServer(headerTimeout: 60, idleTimeout: 60) { port, keys in
            let early = Self.posters(keys).dropFirst()
            let watched = try await blocking {
                let length = "Content-Length: \(Self.events.utf8.count)\r\n"
                let connections = try early.map { poster in
                    let c = try RawConnection(port: port)
                    try c.send(Self.post(key: poster.key, length))
                    return c
                }
                defer { connections.forEach { $0.close() } }
                // The answer first, then the body.
                for c in connections {
                    _ = c.waitForData(seconds: Self.closedBy)
                    try? c.send(Self.events)
                }
                let sent = Date()
                return RawConnection.watch(connections, until: sent.addingTimeInterval(Self.closedBy))
                    .map { ($0.closed?.timeIntervalSince(sent), String(decoding: $0.received, as: UTF8.self)) }
            }
            for ((after, received), poster) in zip(watched, early) {
                #expect(received.hasPrefix("HTTP/1.1 40"), "\(poster.who): \(received)")
                #expect(received.lowercased().contains("connection: close"), "\(poster.who) without Connection: close: \(received)")
                #expect(after != nil, "\(poster.who): still open \(Self.closedBy) s after the body was sent")
            }
        }
    }

    @Test func connectionsBeyondTheCapWaitUntilOneCloses() async throws {
        try await withServer(headerTimeout: 60, idleTimeout: 60, maxConnections: 5) { port, _ in
            let (heldStatuses, sixthAnsweredEarly, sixthStatus) = try await blocking {
                // One at a time, each answered before the next connects: five accepted connections.
                var held: [RawConnection] = []
                var heldStatuses: [Int?] = []
                defer { held.forEach { $0.close() } }
                for _ in 0..<5 {
                    held.append(try RawConnection(port: port))
                    heldStatuses.append(try held.last!.request(Self.fullRequest))
                }
                let sixth = try RawConnection(port: port)  // completed by the kernel's backlog, not accepted
                defer { sixth.close() }
                try sixth.send(Self.fullRequest)
                let early = sixth.waitForData(seconds: 1)
                held[0].close()
                return (heldStatuses, early, try sixth.readResponse(seconds: 120))
            }
            #expect(heldStatuses == Array(repeating: 200, count: 5))
            #expect(!sixthAnsweredEarly, "the sixth connection was answered although five were open")
            #expect(sixthStatus == 200, "the sixth connection was not answered after one of the five closed")
        }
    }

    /// Behind TLS the header clock runs too, the handshake included: a connection that never says hello is closed.
    @Test func theHeaderTimeoutAlsoGuardsHTTPS() async throws {
        let directory = NSTemporaryDirectory() + "veil-slow-tls-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (cert, key) = try makeDevelopmentCertificate(in: directory)
        try await withServer(headerTimeout: 1, idleTimeout: 60, tls: .init(certificateChain: cert, privateKey: key)) { port, _ in
            let closedAfter = try await blocking {
                let start = Date()
                let silent = try RawConnection(port: port)
                defer { silent.close() }
                return RawConnection.watch([silent], until: start.addingTimeInterval(Self.closedBy))[0].closed?.timeIntervalSince(start)
            }
            #expect(
                closedAfter.map { (0.8...Self.closedBy).contains($0) } == true,
                "silent TLS connection closed after \(closedAfter.map { "\($0) s" } ?? "never")")
        }
    }

    @Test func theLimitsAreReadFromTheServerSectionAndChecked() throws {
        let defaults = ServerConfiguration()
        #expect((defaults.headerTimeout, defaults.bodyTimeout, defaults.idleTimeout, defaults.maxConnections) == (10, 30, 75, 4096))

        let config = try VeilConfiguration.parse(
            "server:\n  header_timeout_s: 2.5\n  body_timeout_s: 12\n  idle_timeout_s: 30\n  max_connections: 100\n", file: "veil.yaml")
        #expect(config.headerTimeout == 2.5)
        #expect(config.bodyTimeout == 12)
        #expect(config.idleTimeout == 30)
        #expect(config.maxConnections == 100)

        func error(_ yaml: String) -> String {
            do {
                _ = try VeilConfiguration.parse(yaml, file: "veil.yaml")
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        #expect(error("server:\n  header_timeout_s: 0\n") == "veil.yaml:2: server.header_timeout_s must be a number from 0.1 to 86400.0")
        #expect(error("server:\n  port: 8080\n  body_timeout_s: 0.05\n") == "veil.yaml:3: server.body_timeout_s must be a number from 0.1 to 86400.0")
        #expect(error("server:\n  body_timeout_s: 86401\n") == "veil.yaml:2: server.body_timeout_s must be a number from 0.1 to 86400.0")
        #expect(error("server:\n  port: 8080\n  idle_timeout_s: -5\n") == "veil.yaml:3: server.idle_timeout_s must be a number from 0.1 to 86400.0")
        #expect(error("server:\n  idle_timeout_s: forever\n") == "veil.yaml:2: server.idle_timeout_s must be a number from 0.1 to 86400.0")
        #expect(error("server:\n  max_connections: 0\n") == "veil.yaml:2: server.max_connections must be a whole number from 1 to 1000000")
        #expect(error("server:\n  max_connections: 2.5\n") == "veil.yaml:2: server.max_connections must be a whole number from 1 to 1000000")
    }

    /// The example configuration lists the settings with their defaults.
    @Test func theExampleConfigurationListsTheLimits() throws {
        let config = try VeilConfiguration.load(path: repositoryRoot.appendingPathComponent("veil.example.yaml").path)
        let defaults = ServerConfiguration()
        #expect(config.headerTimeout == defaults.headerTimeout)
        #expect(config.bodyTimeout == defaults.bodyTimeout)
        #expect(config.idleTimeout == defaults.idleTimeout)
        #expect(config.maxConnections == defaults.maxConnections)
    }
}

/// Runs the gateway as `veil serve` does (connection cap included, which `app.test(.live)` would drop) on a free
/// port of 127.0.0.1, gives `body` the port and API keys (role → key), then stops it.
private func withServer(
    headerTimeout: TimeInterval, idleTimeout: TimeInterval, bodyTimeout: TimeInterval = 60, maxConnections: Int = 4096,
    tls: ServerConfiguration.TLSFiles? = nil, _ body: @escaping @Sendable (Int, [String: String]) async throws -> Void
) async throws {
    let f = try GatewayFixture()
    var config = ServerConfiguration()
    config.port = 0
    config.retrainInterval = 0
    config.retentionInterval = 0
    config.headerTimeout = headerTimeout
    config.bodyTimeout = bodyTimeout
    config.idleTimeout = idleTimeout
    config.maxConnections = maxConnections
    config.tls = tls
    let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
    let app = try GatewayServer.application(service: f.service, configuration: config) { port in portContinuation.yield(port) }
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            defer { portContinuation.finish() }  // a server that fails to start ends the wait for its port
            try await app.runService(gracefulShutdownSignals: [])
        }
        var iterator = ports.makeAsyncIterator()
        let port = try #require(await iterator.next(), "the server did not start")
        try await body(port, f.keys)
        group.cancelAll()
    }
}

/// Runs blocking socket work on a dispatch thread and returns what it saw: blocking a thread of the cooperative pool
/// (two on a two-core machine) would stall the server's own request handling. Expectations belong outside: on the
/// dispatch thread they would not be attributed to the test.
private func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try work() }) }
    }
}

struct SocketError: Error, CustomStringConvertible {
    let description: String
    init(_ what: String) { description = "\(what): \(String(cString: strerror(errno)))" }
}

/// A blocking TCP client connection to 127.0.0.1; every wait is bounded with poll(2).
final class RawConnection: Sendable {
    let fd: Int32
    /// Closed once only: a second close could close a descriptor the server (same process) has since been given.
    private let closed = Atomic(false)

    init(port: Int) throws {
        #if canImport(Glibc)
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
            fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw SocketError("socket") }
        #if canImport(Darwin)
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw SocketError("connect") }  // deinit closes the socket
    }

    func close() {
        if !closed.exchange(true, ordering: .relaxed) { _ = posixClose(fd) }
    }

    deinit { close() }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { posixSend(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw SocketError("send") }
            sent += n
        }
    }

    /// Readable (data or end of stream) within `seconds`.
    func waitForData(seconds: TimeInterval) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, Int32(max(0, seconds) * 1000)) > 0
    }

    /// Open: no end of stream waiting to be read.
    var isOpen: Bool {
        var byte: UInt8 = 0
        guard waitForData(seconds: 0) else { return true }
        return recv(fd, &byte, 1, Int32(MSG_PEEK)) > 0
    }

    /// What a watched connection received, and when the server closed it (end of stream or reset; nil: still open).
    struct Watched {
        var closed: Date?
        var received: [UInt8] = []
    }

    /// Watches `connections` all at once, with one poll(2) over those still open, until each is closed or `deadline`,
    /// so every close time is that connection's own. Meanwhile `trickling[i]` (when given) is sent to connection `i`
    /// one byte every `interval`, the first at once, until it is closed.
    static func watch(_ connections: [RawConnection], until deadline: Date, trickling: [[UInt8]] = [], every interval: TimeInterval = 1) -> [Watched]
    {
        var watched = Array(repeating: Watched(), count: connections.count)
        var sent = Array(repeating: 0, count: connections.count)
        var nextByte = Date()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let open = connections.indices.filter { watched[$0].closed == nil }
            let trickles = open.filter { $0 < trickling.count && sent[$0] < trickling[$0].count }
            guard !open.isEmpty, Date() < deadline else { return watched }
            if !trickles.isEmpty, Date() >= nextByte {
                for i in trickles {
                    // A refused byte is a closed connection: the poll below sees it.
                    _ = withUnsafeBytes(of: trickling[i][sent[i]]) { posixSend(connections[i].fd, $0.baseAddress, 1) }
                    sent[i] += 1
                }
                nextByte += interval
            }
            let wake = trickles.isEmpty ? deadline : min(deadline, nextByte)
            var fds = open.map { pollfd(fd: connections[$0].fd, events: Int16(POLLIN), revents: 0) }
            let milliseconds = Int32(max(0, (wake.timeIntervalSinceNow * 1000).rounded(.up)))
            guard poll(&fds, nfds_t(fds.count), milliseconds) > 0 else { continue }
            let now = Date()
            for (k, i) in open.enumerated() where fds[k].revents != 0 {
                let n = recv(connections[i].fd, &buffer, buffer.count, 0)
                if n <= 0 { watched[i].closed = now } else { watched[i].received += buffer[..<n] }
            }
        }
    }

    /// Sends a request and reads its response; the status, or nil when none came within `seconds` (long: the answer
    /// needs a thread of the cooperative pool, which a parallel run on two cores can keep busy for over 10 s).
    func request(_ text: String, seconds: TimeInterval = 120) throws -> Int? {
        try send(text)
        return try readResponse(seconds: seconds)
    }

    /// Reads one response (head and a Content-Length body); its status, or nil when it did not come within `seconds`.
    func readResponse(seconds: TimeInterval) throws -> Int? {
        let deadline = Date().addingTimeInterval(seconds)
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        while true {
            if let end = received.firstRange(of: separator) {
                let head = String(decoding: received[..<end.lowerBound], as: UTF8.self)
                let lines = head.split(separator: "\r\n")
                let length =
                    lines.dropFirst().first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                if received.count - end.upperBound >= length {
                    return lines.first.flatMap { Int($0.split(separator: " ")[1]) }
                }
            }
            guard waitForData(seconds: deadline.timeIntervalSinceNow) else { return nil }
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else { throw SocketError("the server closed the connection before answering") }
            received += buffer[..<n]
        }
    }
}

#if canImport(Glibc)
    private func posixSend(_ fd: Int32, _ bytes: UnsafeRawPointer?, _ count: Int) -> Int { Glibc.send(fd, bytes, count, Int32(MSG_NOSIGNAL)) }
    private func posixClose(_ fd: Int32) -> Int32 { Glibc.close(fd) }
#else
    private func posixSend(_ fd: Int32, _ bytes: UnsafeRawPointer?, _ count: Int) -> Int { Darwin.send(fd, bytes, count, 0) }
    private func posixClose(_ fd: Int32) -> Int32 { Darwin.close(fd) }
#endif
