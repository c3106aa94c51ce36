import Testing
@testable import Vault

@Suite struct AEADTests {
    let key = SecretKey(randomCount: 32)
    let ad = Array("features|row-1|tok".utf8)

    @Test func sealThenOpenReturnsThePlaintext() throws {
        let message = Array("dwell 12000 ms on sku-1".utf8)
        let box = AEAD.seal(message, key: key, version: 3, associatedData: ad)
        #expect(box.count == message.count + AEAD.overhead)
        #expect(try AEAD.keyVersion(of: box) == 3)
        #expect(try AEAD.open(box, key: key, associatedData: ad) == message)
    }

    @Test func emptyPlaintextRoundTrips() throws {
        let box = AEAD.seal([], key: key, version: 1, associatedData: ad)
        #expect(try AEAD.open(box, key: key, associatedData: ad) == [])
    }

    @Test func wrongKeyFailsAuthentication() {
        let box = AEAD.seal([1, 2, 3], key: key, version: 1, associatedData: ad)
        #expect(throws: VaultError(.authenticationFailed, "")) {
            try AEAD.open(box, key: SecretKey(randomCount: 32), associatedData: ad)
        }
    }

    @Test func wrongAssociatedDataFailsAuthentication() {
        let box = AEAD.seal([1, 2, 3], key: key, version: 1, associatedData: ad)
        #expect(throws: VaultError(.authenticationFailed, "")) {
            try AEAD.open(box, key: key, associatedData: Array("features|row-2|tok".utf8))
        }
    }

    @Test func everySingleFlippedByteIsDetected() {
        let box = AEAD.seal(Array("a purchase of sku-9".utf8), key: key, version: 1, associatedData: ad)
        for index in box.indices {
            for bit in [0x01, 0x80] as [UInt8] {
                var tampered = box
                tampered[index] ^= bit
                #expect(throws: VaultError.self) { try AEAD.open(tampered, key: key, associatedData: ad) }
            }
        }
    }

    @Test func changingTheKeyVersionInTheHeaderFails() {
        let box = AEAD.seal([9, 9], key: key, version: 1, associatedData: ad)
        var relabelled = box
        relabelled[4] = 2
        #expect(throws: VaultError(.authenticationFailed, "")) {
            try AEAD.open(relabelled, key: key, associatedData: ad)
        }
    }

    @Test func unknownVersionIsReportedAsSuch() {
        let box = AEAD.seal([9, 9], key: key, version: 7, associatedData: ad)
        #expect(throws: VaultError(.unknownKeyVersion, "")) {
            try AEAD.open(box, associatedData: ad) { v in throw VaultError(.unknownKeyVersion, "no v\(v)") }
        }
    }

    @Test func truncatedAndForeignEnvelopesAreMalformed() {
        #expect(throws: VaultError(.malformedEnvelope, "")) { try AEAD.open([1, 0, 0], key: key, associatedData: ad) }
        var box = AEAD.seal([1], key: key, version: 1, associatedData: ad)
        box[0] = 9
        #expect(throws: VaultError(.malformedEnvelope, "")) { try AEAD.open(box, key: key, associatedData: ad) }
    }

    @Test func nonceIsTwentyFourBytesAndNeverRepeats() {
        #expect(AEAD.nonceLength == 24)
        var nonces = Set<[UInt8]>()
        let message = Array("same plaintext".utf8)
        for _ in 0..<100_000 {
            let box = AEAD.seal(message, key: key, version: 1, associatedData: ad)
            nonces.insert(Array(box[5..<29]))
        }
        #expect(nonces.count == 100_000)
    }

    @Test func keyDescriptionIsRedacted() throws {
        let bytes: [UInt8] = Array(repeating: 0x41, count: 32)
        let key = try SecretKey(copying: bytes)
        #expect(!"\(key)".contains("AAAA"))
        #expect(!String(reflecting: key).contains("65"))
        #expect("\(key)".contains("redacted"))
    }

    @Test func wrongKeyLengthIsRejected() {
        #expect(throws: VaultError(.invalidKeyLength, "")) { try SecretKey(copying: [1, 2, 3], expectedCount: 32) }
    }
}

@Suite struct PrimitiveTests {
    @Test func keyedHashDependsOnKeyAndMessage() {
        let k1 = SecretKey(randomCount: 32), k2 = SecretKey(randomCount: 32)
        let m = Array("u-42".utf8)
        #expect(Hash.keyed(m, key: k1) == Hash.keyed(m, key: k1))
        #expect(Hash.keyed(m, key: k1) != Hash.keyed(m, key: k2))
        #expect(Hash.keyed(m, key: k1) != Hash.keyed(Array("u-43".utf8), key: k1))
    }

    @Test func blake2bMatchesTheReferenceVector() {
        // BLAKE2b-512 of the empty string (RFC 7693 appendix / reference implementation).
        #expect(Hash.blake2b([], length: 64).hexString.hasPrefix("786a02f742015903c6c6fd852552d272912f4740e15847618a86e217f71f5419"))
    }

    @Test func derivedKeysDifferByContextAndIDAndAreDeterministic() {
        let master = SecretKey(randomCount: 32)
        func bytes(_ k: SecretKey) -> [UInt8] { k.withUnsafeBytes { Array($0) } }
        let a = KeyDerivation.derive(from: master, context: "tokens__", id: 1)
        #expect(bytes(a) == bytes(KeyDerivation.derive(from: master, context: "tokens__", id: 1)))
        #expect(bytes(a) != bytes(KeyDerivation.derive(from: master, context: "tokens__", id: 2)))
        #expect(bytes(a) != bytes(KeyDerivation.derive(from: master, context: "apikeys_", id: 1)))
    }

    @Test func signaturesVerifyOnlyForTheSignedMessageAndKey() {
        let pair = SigningKeyPair.generate()
        let message = Array("checkpoint 1000 head abc".utf8)
        let signature = pair.sign(message)
        #expect(pair.publicKey.isValidSignature(signature, for: message))
        #expect(!pair.publicKey.isValidSignature(signature, for: Array("checkpoint 1001 head abc".utf8)))
        #expect(!SigningKeyPair.generate().publicKey.isValidSignature(signature, for: message))
        var bad = signature
        bad[10] ^= 1
        #expect(!pair.publicKey.isValidSignature(bad, for: message))
    }

    @Test func sealedBoxOpensOnlyForTheRecipient() throws {
        let recipient = SealedBox.KeyPair.generate()
        let box = try SealedBox.seal(Array("export".utf8), to: recipient.publicKey)
        #expect(try SealedBox.open(box, with: recipient) == Array("export".utf8))
        #expect(throws: VaultError.self) { try SealedBox.open(box, with: SealedBox.KeyPair.generate()) }
    }

    @Test func hexRoundTrips() {
        let bytes: [UInt8] = [0, 1, 0xab, 0xff]
        #expect(bytes.hexString == "0001abff")
        #expect([UInt8](hexString: "0001ABff") == bytes)
        #expect([UInt8](hexString: "abc") == nil)
        #expect([UInt8](hexString: "zz") == nil)
    }
}
