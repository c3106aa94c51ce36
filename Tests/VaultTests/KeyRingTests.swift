import Foundation
import Testing
@testable import Vault

func temporaryDirectory(_ name: String = #function) -> String {
    let path = NSTemporaryDirectory() + "veil-tests-\(UUID().uuidString)"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite struct KeyRingTests {
    /// Each purpose fingerprints with a key of its own, the same across loads of the ring, and with the very key the
    /// fixed contexts gave before the Vault handed out fingerprinters (stored API keys and match keys still match).
    @Test func fingerprintersArePerPurposeStableAndCompatible() throws {
        let dir = temporaryDirectory()
        let ring = try KeyRing.initialize(directory: dir)
        let again = try KeyRing.load(directory: dir)
        let input = Array("vk_example".utf8)
        // The legacy deliveries' fingerprinter keeps the key they were recorded under: the token key (read only).
        let purposes = FingerprintPurpose.allCases.filter { $0 != .legacyDeliveries }
        let digests = purposes.map { ring.fingerprinter(for: $0).digest(input) }
        #expect(Set(digests).count == purposes.count)
        #expect(purposes.map { again.fingerprinter(for: $0).digest(input) } == digests)
        for (purpose, context) in [
            (FingerprintPurpose.apiKeys, "apikeys_"), (.identityLinking, "linking_"), (.clientAddress, "clients_"),
            (.modelProvenance, "provenan"), (.browserIdentity, "browser_"), (.deliveries, "deliver_"),
        ] {
            let legacy = Hash.keyed(input, key: KeyDerivation.derive(from: ring.pseudonymKey, context: context, id: 1))
            #expect(ring.fingerprinter(for: purpose).digest(input) == legacy, "\(purpose)")
        }
        // Tokens, and the deliveries recorded before deliveries had a key of their own, keep the pseudonym key itself:
        // every stored token depends on it. No other purpose uses it.
        for purpose in [FingerprintPurpose.subjectTokens, .legacyDeliveries] {
            #expect(ring.fingerprinter(for: purpose).digest(input) == Hash.keyed(input, key: ring.pseudonymKey), "\(purpose)")
        }
        #expect(digests.filter { $0 == Hash.keyed(input, key: ring.pseudonymKey) }.count == 1, "only the tokens use the pseudonym key")
    }

    /// A browser key's identity secret is stable for its key, differs between keys, and a proof made with the
    /// secret (as a shop's server would, with any HMAC-SHA256) verifies for that subject and key only.
    @Test func subjectProofsBindASubjectToOneBrowserKey() throws {
        let ring = try KeyRing.initialize(directory: temporaryDirectory())
        let proofs = ring.subjectProofs
        let keyA = Array(repeating: UInt8(1), count: 32), keyB = Array(repeating: UInt8(2), count: 32)
        let secret = proofs.secret(forKey: keyA)
        #expect(secret.hasPrefix("vs_") && secret.utf8.count == 67)
        #expect(proofs.secret(forKey: keyA) == secret && proofs.secret(forKey: keyB) != secret)
        let now: Int64 = 1_800_000_000
        let proof = SubjectProofs.proof(subject: "customer-42", secret: secret, expires: now + 3600)
        #expect(proofs.isValid(proof: proof, subject: "customer-42", keyFingerprint: keyA, now: now))
        #expect(proofs.isValid(proof: proof.uppercased(), subject: "customer-42", keyFingerprint: keyA, now: now))
        #expect(!proofs.isValid(proof: proof, subject: "customer-43", keyFingerprint: keyA, now: now))
        #expect(!proofs.isValid(proof: proof, subject: "customer-42", keyFingerprint: keyB, now: now))
        #expect(!proofs.isValid(proof: String(proof.dropLast(2)), subject: "customer-42", keyFingerprint: keyA, now: now))
        #expect(!proofs.isValid(proof: "not hex", subject: "customer-42", keyFingerprint: keyA, now: now))
        // Expired, or valid for longer than a proof may be: refused.
        #expect(!proofs.isValid(proof: proof, subject: "customer-42", keyFingerprint: keyA, now: now + 3600))
        let forever = SubjectProofs.proof(subject: "customer-42", secret: secret, expires: now + SubjectProofs.maxLifetime + 1)
        #expect(!proofs.isValid(proof: forever, subject: "customer-42", keyFingerprint: keyA, now: now))
        // The expiry is signed: moving it breaks the proof.
        let moved = "\(now + 7200)." + proof.split(separator: ".")[1]
        #expect(!proofs.isValid(proof: moved, subject: "customer-42", keyFingerprint: keyA, now: now))
        // What a shop's server computes with any standard HMAC: hex(HMAC-SHA256(key: secret, message: "EXPIRES|id")).
        #expect(proof == "\(now + 3600)." + Hash.hmacSHA256(Array("\(now + 3600)|customer-42".utf8), key: Array(secret.utf8)).hexString)
    }

    @Test func initCreatesOwnerOnlyKeyFilesAndAPublicAuditKey() throws {
        let dir = temporaryDirectory()
        let ring = try KeyRing.initialize(directory: dir)
        #expect(ring.currentVersion == 1)
        for name in ["master-v1.key", "pseudonym.key", "audit.key"] {
            let attributes = try FileManager.default.attributesOfItem(atPath: dir + "/" + name)
            #expect((attributes[.posixPermissions] as! NSNumber).intValue == 0o600, "\(name)")
        }
        let pub = try String(contentsOfFile: dir + "/audit.pub", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect([UInt8](hexString: pub) == ring.auditSigner.publicKey.bytes)
    }

    @Test func initRefusesToOverwriteAnExistingRing() throws {
        let dir = temporaryDirectory()
        try KeyRing.initialize(directory: dir)
        #expect(throws: VaultError.self) { try KeyRing.initialize(directory: dir) }
    }

    @Test func reloadedRingOpensWhatTheFirstSealed() throws {
        let dir = temporaryDirectory()
        let box = try KeyRing.initialize(directory: dir).seal([1, 2, 3], associatedData: [7])
        #expect(try KeyRing.load(directory: dir).open(box, associatedData: [7]) == [1, 2, 3])
    }

    @Test func rotationSealsUnderTheNewVersionAndStillOpensTheOld() throws {
        let dir = temporaryDirectory()
        let old = try KeyRing.initialize(directory: dir).seal([4, 5], associatedData: [])
        #expect(try KeyRing.rotate(directory: dir) == 2)
        let ring = try KeyRing.load(directory: dir)
        #expect(ring.currentVersion == 2)
        let new = ring.seal([6], associatedData: [])
        #expect(try AEAD.keyVersion(of: new) == 2)
        #expect(try ring.open(old, associatedData: []) == [4, 5])
    }

    @Test func retiredVersionIsRejectedWithAnExplicitError() throws {
        let dir = temporaryDirectory()
        let old = try KeyRing.initialize(directory: dir).seal([4, 5], associatedData: [])
        try KeyRing.rotate(directory: dir)
        #expect(try KeyRing.retire(directory: dir, below: 2) == [1])
        #expect(throws: VaultError(.unknownKeyVersion, "")) {
            try KeyRing.load(directory: dir).open(old, associatedData: [])
        }
        #expect(throws: VaultError.self) { try KeyRing.retire(directory: dir, below: 3) }
    }

    @Test func looseKeyFilePermissionsStopLoadingWithTheFix() throws {
        let dir = temporaryDirectory()
        try KeyRing.initialize(directory: dir)
        chmod(dir + "/master-v1.key", 0o644)
        do {
            _ = try KeyRing.load(directory: dir)
            Issue.record("a group-readable key file was accepted")
        } catch let error as VaultError {
            #expect(error.code == .insecureKeyFile)
            #expect(error.message.contains("master-v1.key"))
            #expect(error.message.contains("chmod 600"))
        }
    }

    @Test func wrongKeyLengthNamesTheFile() throws {
        let dir = temporaryDirectory()
        try KeyRing.initialize(directory: dir)
        let path = dir + "/pseudonym.key"
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o600)
        do {
            _ = try KeyRing.load(directory: dir)
            Issue.record("a short key file was accepted")
        } catch let error as VaultError {
            #expect(error.code == .invalidKeyLength)
            #expect(error.message.contains("pseudonym.key"))
        }
    }

    @Test func missingDirectoryOrFileSaysHowToCreateIt() throws {
        let dir = temporaryDirectory() + "/nope"
        do {
            _ = try KeyRing.load(directory: dir)
            Issue.record("a missing key directory was accepted")
        } catch let error as VaultError {
            #expect(error.code == .missingKeyFile)
            #expect(error.message.contains("veil keys init"))
        }
        let dir2 = temporaryDirectory()
        try KeyRing.initialize(directory: dir2)
        try FileManager.default.removeItem(atPath: dir2 + "/audit.key")
        #expect(throws: VaultError(.missingKeyFile, "")) { try KeyRing.load(directory: dir2) }
    }

    @Test func passphraseRingStoresOnlyASaltAndNeedsThePassphrase() throws {
        let dir = temporaryDirectory()
        let box = try KeyRing.initialize(directory: dir, passphrase: "correct horse").seal([1], associatedData: [])
        #expect(FileManager.default.fileExists(atPath: dir + "/master-v1.salt"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/master-v1.key"))
        #expect(try KeyRing.load(directory: dir, passphrase: "correct horse").open(box, associatedData: []) == [1])
        #expect(throws: VaultError(.authenticationFailed, "")) {
            try KeyRing.load(directory: dir, passphrase: "wrong horse").open(box, associatedData: [])
        }
        #expect(throws: VaultError(.missingKeyFile, "")) { try KeyRing.load(directory: dir) }
    }
}
