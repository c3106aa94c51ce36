import Dispatch
import Foundation
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
/// timeout, an idle keep-alive connection is closed after the idle timeout, and connections beyond the cap wait in the
/// backlog. Each test runs a real server on a free port of 127.0.0.1 and talks to it over plain sockets; every wait
/// is bounded, and the blocking socket calls run on a dispatch thread, never on the pool that runs the server.
@Suite struct SlowClientTests {
    static let partialHead = "GET /health/live HTTP/1.1\r\nHost: x\r\n"
    static let fullRequest = "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"

    @Test func halfSentRequestsSilentAndIdleConnectionsAreAllClosed() async throws {
        try await withServer(headerTimeout: 1, idleTimeout: 1) { port in
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
                let closedAfter = all.map { $0.waitUntilClosed(deadline: start.addingTimeInterval(6))?.timeIntervalSince(start) }
                // The server is alive and answers a complete request.
                let fresh = try RawConnection(port: port)
                defer { fresh.close() }
                return (keepAliveStatus, closedAfter, try fresh.request(Self.fullRequest))
            }
            #expect(keepAliveStatus == 200)
            let open = closedAfter.filter { $0 == nil }.count
            #expect(open == 0, "\(open) of \(closedAfter.count) connections still open 6 s after connecting (timeouts 1 s)")
            // Closed by the timeouts, not at once for some other reason.
            let earliest = closedAfter.compactMap { $0 }.min() ?? 0
            #expect(earliest >= 0.8, "a connection was closed after \(earliest) s, before its 1 s timeout")
            #expect(freshStatus == 200)
        }
    }

    @Test func theHeaderTimeoutCutsSlowHeadsButNotIdleKeepAlive() async throws {
        try await withServer(headerTimeout: 1, idleTimeout: 30) { port in
            let (statuses, secondAfter, trickleAfter, idleOpen, idleAgain) = try await blocking {
                // Each connection sends at once: one left waiting would rightly be cut by the header timeout.
                let idle = try RawConnection(port: port)
                defer { idle.close() }
                let first = try idle.request(Self.fullRequest)
                let secondHalfSent = try RawConnection(port: port)
                defer { secondHalfSent.close() }
                let second = try secondHalfSent.request(Self.fullRequest)

                // After a complete request, the next head's clock starts at its first byte.
                let secondStart = Date()
                try secondHalfSent.send(Self.partialHead)
                // A head trickled a byte every 200 ms never completes; the trickle does not restart the clock.
                let trickleStart = Date()
                let trickle = try RawConnection(port: port)
                defer { trickle.close() }
                let trickleClosed = trickle.trickle(Self.partialHead + String(repeating: "x", count: 100), every: 0.2,
                                                    until: trickleStart.addingTimeInterval(6))
                let secondClosed = secondHalfSent.waitUntilClosed(deadline: secondStart.addingTimeInterval(6))

                // Idle between requests is not a slow head: after at least 2.2 s without a byte, still open, and it
                // serves again.
                Thread.sleep(forTimeInterval: max(0, 2.2 - Date().timeIntervalSince(secondStart)))
                let idleOpen = idle.isOpen
                return ([first, second], secondClosed?.timeIntervalSince(secondStart), trickleClosed?.timeIntervalSince(trickleStart),
                        idleOpen, idleOpen ? try idle.request(Self.fullRequest) : nil)
            }
            #expect(statuses == [200, 200])
            #expect(secondAfter.map { (0.8...4).contains($0) } == true, "half-sent second head closed after \(secondAfter.map { "\($0) s" } ?? "never")")
            #expect(trickleAfter.map { (0.8...4).contains($0) } == true, "trickled head closed after \(trickleAfter.map { "\($0) s" } ?? "never")")
            #expect(idleOpen, "an idle keep-alive connection was closed by the header timeout")
            #expect(idleAgain == 200)
        }
    }

    @Test func theIdleTimeoutClosesKeepAliveConnections() async throws {
        try await withServer(headerTimeout: 30, idleTimeout: 1) { port in
            let (status, closedAfter, freshStatus) = try await blocking {
                let idle = try RawConnection(port: port)
                defer { idle.close() }
                let status = try idle.request(Self.fullRequest)
                let answered = Date()
                let closedAfter = idle.waitUntilClosed(deadline: answered.addingTimeInterval(6))?.timeIntervalSince(answered)
                let fresh = try RawConnection(port: port)
                defer { fresh.close() }
                return (status, closedAfter, try fresh.request(Self.fullRequest))
            }
            #expect(status == 200)
            #expect(closedAfter.map { (0.8...4).contains($0) } == true, "idle keep-alive closed after \(closedAfter.map { "\($0) s" } ?? "never")")
            #expect(freshStatus == 200)
        }
    }

    @Test func connectionsBeyondTheCapWaitUntilOneCloses() async throws {
        try await withServer(headerTimeout: 30, idleTimeout: 30, maxConnections: 5) { port in
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
                return (heldStatuses, early, try sixth.readResponse(seconds: 5))
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
        try await withServer(headerTimeout: 1, idleTimeout: 30, tls: .init(certificateChain: cert, privateKey: key)) { port in
            let closedAfter = try await blocking {
                let start = Date()
                let silent = try RawConnection(port: port)
                defer { silent.close() }
                return silent.waitUntilClosed(deadline: start.addingTimeInterval(6))?.timeIntervalSince(start)
            }
            #expect(closedAfter.map { (0.8...4).contains($0) } == true, "silent TLS connection closed after \(closedAfter.map { "\($0) s" } ?? "never")")
        }
    }

    @Test func theLimitsAreReadFromTheServerSectionAndChecked() throws {
        let defaults = ServerConfiguration()
        #expect((defaults.headerTimeout, defaults.idleTimeout, defaults.maxConnections) == (10, 75, 4096))

        let config = try VeilConfiguration.parse("server:\n  header_timeout_s: 2.5\n  idle_timeout_s: 30\n  max_connections: 100\n", file: "veil.yaml")
        #expect(config.headerTimeout == 2.5)
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
        #expect(error("server:\n  port: 8080\n  idle_timeout_s: -5\n") == "veil.yaml:3: server.idle_timeout_s must be a number from 0.1 to 86400.0")
        #expect(error("server:\n  idle_timeout_s: forever\n") == "veil.yaml:2: server.idle_timeout_s must be a number from 0.1 to 86400.0")
        #expect(error("server:\n  max_connections: 0\n") == "veil.yaml:2: server.max_connections must be a whole number from 1 to 1000000")
        #expect(error("server:\n  max_connections: 2.5\n") == "veil.yaml:2: server.max_connections must be a whole number from 1 to 1000000")
    }

    /// The example configuration lists the three settings with their defaults.
    @Test func theExampleConfigurationListsTheLimits() throws {
        let config = try VeilConfiguration.load(path: repositoryRoot.appendingPathComponent("veil.example.yaml").path)
        let defaults = ServerConfiguration()
        #expect(config.headerTimeout == defaults.headerTimeout)
        #expect(config.idleTimeout == defaults.idleTimeout)
        #expect(config.maxConnections == defaults.maxConnections)
    }
}

/// Runs the gateway as `veil serve` does (connection cap included, which `app.test(.live)` would drop) on a free
/// port of 127.0.0.1, gives `body` the port, then stops it.
private func withServer(headerTimeout: TimeInterval, idleTimeout: TimeInterval, maxConnections: Int = 4096,
                        tls: ServerConfiguration.TLSFiles? = nil, _ body: @escaping @Sendable (Int) async throws -> Void) async throws {
    let f = try GatewayFixture()
    var config = ServerConfiguration()
    config.port = 0
    config.retrainInterval = 0
    config.retentionInterval = 0
    config.headerTimeout = headerTimeout
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
        try await body(port)
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

    /// When the server closed the connection (end of stream or reset), reading and dropping anything it sent first;
    /// nil when it is still open at `deadline`.
    func waitUntilClosed(deadline: Date) -> Date? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            guard waitForData(seconds: deadline.timeIntervalSinceNow) else { return nil }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { return Date() }
        }
    }

    /// Open: no end of stream waiting to be read.
    var isOpen: Bool {
        var byte: UInt8 = 0
        guard waitForData(seconds: 0) else { return true }
        return recv(fd, &byte, 1, Int32(MSG_PEEK)) > 0
    }

    /// Sends `text` one byte every `interval` until the server closes the connection; when it did, or nil.
    func trickle(_ text: String, every interval: TimeInterval, until deadline: Date) -> Date? {
        for byte in text.utf8 {
            if Date() >= deadline { return nil }
            guard (try? send(String(decoding: [byte], as: UTF8.self))) != nil else { return Date() }
            if waitForData(seconds: min(interval, deadline.timeIntervalSinceNow)) {
                return waitUntilClosed(deadline: deadline)
            }
        }
        return waitUntilClosed(deadline: deadline)
    }

    /// Sends a request and reads its response; the status, or nil when none came within `seconds`.
    func request(_ text: String, seconds: TimeInterval = 5) throws -> Int? {
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
                let length = lines.dropFirst().first { $0.lowercased().hasPrefix("content-length:") }
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
