import Audit
import Foundation
import Testing
import Vault

/// Several gateways share one audit key but each keeps its own log: a log's name goes into the origin of its signed
/// heads, so a head of one gateway's log is never taken for a head of another's (a witness would call that a fork).
@Suite struct LogNameTests {
    /// Both logs get the same clock and the same entries: their trees are equal, so only the name tells their heads
    /// apart.
    static func trail(_ dir: String, _ name: String?, _ signer: SigningKeyPair) throws -> SQLiteAuditTrail {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return try SQLiteAuditTrail(
            path: dir + "/audit.sqlite", indexPath: dir + "/audit-index.sqlite", signer: signer, logName: name,
            now: { Date(timeIntervalSince1970: 1_795_400_000) })
    }

    @Test func eachGatewaysLogVerifiesUnderItsOwnNameAndRefusesTheOthersHeads() async throws {
        let root = NSTemporaryDirectory() + "veil-logname-\(UUID().uuidString)"
        let signer = SigningKeyPair.generate()
        let one = try Self.trail(root + "/gw1", "gw1", signer), two = try Self.trail(root + "/gw2", "gw2", signer)
        for log in [one, two] {
            for n in 0..<3 {
                try await log.append(AuditRecord(actor: "a\(n)", role: "app", action: "events:write", resource: "/v1/events", outcome: .allowed))
            }
        }
        let head1 = try #require(try await one.checkpoint(minimumInterval: .zero))
        let head2 = try #require(try await two.checkpoint(minimumInterval: .zero))
        #expect(head1.note.hasPrefix(HeadSigner.defaultOrigin(for: signer.publicKey) + "/gw1\n"))
        #expect(head2.note.hasPrefix(HeadSigner.defaultOrigin(for: signer.publicKey) + "/gw2\n"))
        #expect(head1.size == head2.size && head1.rootHash == head2.rootHash, "the two logs must differ in their name alone")

        #expect(try one.verify(trustedHeads: [head1.note], verifier: nil).intact)
        #expect(try two.verify(trustedHeads: [head2.note], verifier: nil).intact)
        // The other gateway's head, though signed with the same key, does not count for this log.
        #expect(try !one.verify(trustedHeads: [head2.note], verifier: nil).intact)
        // A witness holding gw1's verifier key refuses gw2's heads.
        let verifier1 = try HeadSigner.verifier(for: signer.publicKey, logName: "gw1")
        #expect(try !one.verify(trustedHeads: [head2.note], verifier: verifier1).intact)
        #expect(try one.verify(trustedHeads: [head1.note], verifier: verifier1).intact)
        // Names are what a signed note's origin may carry, and nothing personal.
        #expect(HeadSigner.isValidLogName("gw-3"))
        for bad in ["", "GW", "gw 1", "gw/1", String(repeating: "a", count: 33), "ü"] { #expect(!HeadSigner.isValidLogName(bad)) }
    }
}
