import Foundation
import VeilCore
import Gateway
import Hummingbird
import HummingbirdTesting
import TestSupport
import Testing

/// A self-signed development certificate, made with the same openssl command the README gives.
func makeDevelopmentCertificate(in directory: String) throws -> (cert: String, key: String) {
    let cert = directory + "/dev-cert.pem", key = directory + "/dev-key.pem"
    let openssl = try Spawn.run(
        "/usr/bin/env",
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "30",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
    guard openssl.status == 0 else { throw CocoaError(.fileWriteUnknown) }
    return (cert, key)
}

@Suite struct TLSTests {
    @Test func theServerSpeaksHTTPSWithTheGivenCertificate() async throws {
        let f = try GatewayFixture()
        try FileManager.default.createDirectory(atPath: f.root, withIntermediateDirectories: true)
        let (cert, key) = try makeDevelopmentCertificate(in: f.root)
        var config = ServerConfiguration()
        config.port = 0
        config.retrainInterval = 0
        config.retentionInterval = 0
        config.tls = .init(certificateChain: cert, privateKey: key)
        let app = try GatewayServer.application(service: f.service, configuration: config)
        try await app.test(.ahc(.https)) { client in
            let live = try await client.execute(uri: "/health/live", method: .get)
            #expect(live.status == .ok)
            let recs = try await client.call(.get, "/v1/audit/verify", key: f.keys["compliance-officer"])
            #expect(recs.status == 200)
        }
        // Plain HTTP to the TLS port gets no HTTP answer.
        let plain = try GatewayServer.application(service: f.service, configuration: config)
        await #expect(throws: (any Error).self) {
            try await plain.test(.ahc(.http)) { client in
                _ = try await client.execute(uri: "/health/live", method: .get)
            }
        }
    }

    @Test func unusableCertificateFilesAreNamed() throws {
        var config = ServerConfiguration()
        config.tls = .init(certificateChain: "/nonexistent/cert.pem", privateKey: "/nonexistent/key.pem")
        let f = try GatewayFixture()
        #expect {
            _ = try GatewayServer.application(service: f.service, configuration: config)
        } throws: { error in
            "\(error)".contains("cannot read a PEM certificate from /nonexistent/cert.pem")
        }
    }
}
