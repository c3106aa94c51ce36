import Testing
@testable import Vault

@Suite struct HashTests {
    @Test func sha256MatchesTheFIPS180Vectors() {
        #expect(Hash.sha256(Array("abc".utf8)).hexString == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Hash.sha256([]).hexString == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let twoBlocks = Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        #expect(Hash.sha256(twoBlocks).hexString == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test func pointerFormWritesTheSameDigest() {
        let message = Array("abc".utf8)
        var out = [UInt8](repeating: 0, count: 32)
        message.withUnsafeBytes { input in out.withUnsafeMutableBytes { Hash.sha256(input, into: $0) } }
        #expect(out == Hash.sha256(message))
    }
}
