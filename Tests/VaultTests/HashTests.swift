import Testing
@testable import Vault

@Suite struct HashTests {
    @Test func sha256MatchesTheFIPS180Vectors() {
        #expect(Hash.sha256(Array("abc".utf8)).hexString == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Hash.sha256([]).hexString == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let twoBlocks = Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        #expect(Hash.sha256(twoBlocks).hexString == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test func sha384MatchesTheFIPS180Vector() {
        #expect(
            Hash.sha384(Array("abc".utf8)).hexString
                == "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7")
    }

    /// RFC 4231 test cases 2 (a short key) and 6 (a key longer than the block, hashed first).
    @Test func hmacSHA256MatchesRFC4231() {
        #expect(
            Hash.hmacSHA256(Array("what do ya want for nothing?".utf8), key: Array("Jefe".utf8)).hexString
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(
            Hash.hmacSHA256(Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8), key: Array(repeating: 0xaa, count: 131))
                .hexString == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    @Test func pointerFormWritesTheSameDigest() {
        let message = Array("abc".utf8)
        var out = [UInt8](repeating: 0, count: 32)
        message.withUnsafeBytes { input in out.withUnsafeMutableBytes { Hash.sha256(input, into: $0) } }
        #expect(out == Hash.sha256(message))
    }
}
