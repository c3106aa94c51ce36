import Foundation
import VeilCore
import Gateway
import Hummingbird
import HummingbirdTesting
import Logging
import Synchronization
import Testing

/// What an operator sees when `veil serve` cannot start listening.
@Suite struct StartupTests {
    @Test func aPortAlreadyInUseIsNamedWithTheFixAndNothingIsLoggedAsFailed() async throws {
        let capture = LogCapture()
        let f = try GatewayFixture(logger: capture.logger)
        var config = ServerConfiguration()
        config.port = 0
        config.retrainInterval = 0
        config.retentionInterval = 0
        let first = try GatewayServer.application(service: f.service, configuration: config)
        try await first.test(.live) { [config] client in
            let port = try #require(client.port)
            var second = config
            second.port = port
            // Retention runs at start; when the failed bind ends the server while it runs, that is no retention failure.
            second.retentionInterval = 3600
            let error = await #expect(throws: (any Error).self) {
                try await GatewayServer.application(service: f.service, configuration: second).run()
            }
            let problem = try #require(error.flatMap { GatewayServer.listenProblem($0, configuration: second) })
            #expect(
                problem
                    == "127.0.0.1:\(port) is already in use (another veil serve?); stop that process or choose another port with --port (0 picks a free one)"
            )
            // The first server still answers.
            #expect(try await client.execute(uri: "/health/live", method: .get).status == .ok)
        }
        let errors = capture.messages.withLock { $0.filter { $0.0 >= .error }.map(\.1) }
        #expect(errors.isEmpty, "logged as errors: \(errors)")
    }

    @Test func anAddressThatIsNotThisMachinesIsNamedWithTheFix() async throws {
        let f = try GatewayFixture()
        for (host, expected) in [
            ("no-such-host.invalid", "cannot resolve the host 'no-such-host.invalid'"),
            ("192.0.2.1", "192.0.2.1 is not an address of this machine"),
        ] {
            var config = ServerConfiguration()
            config.host = host
            config.port = 0
            config.retrainInterval = 0
            config.retentionInterval = 0
            let error = await #expect(throws: (any Error).self) {
                try await GatewayServer.application(service: f.service, configuration: config).run()
            }
            let problem = error.flatMap { GatewayServer.listenProblem($0, configuration: config) }
            #expect(problem?.hasPrefix(expected) == true, "\(host): \(problem ?? "no message")")
            #expect(problem?.contains("--host") == true)
        }
    }

    @Test func errorsOtherThanListeningAreLeftAlone() {
        struct Unrelated: Error {}
        #expect(GatewayServer.listenProblem(Unrelated(), configuration: ServerConfiguration()) == nil)
    }
}
