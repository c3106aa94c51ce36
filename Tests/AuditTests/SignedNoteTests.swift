import Foundation
import Testing
@testable import Vault
@testable import Audit

/// A 32-byte root hash in base64 (from trillian-tessera's parse_test.go), for checkpoint texts.
private let sampleRoot = "qINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs="

/// C2SP signed-note and tlog-checkpoint, against the examples the specifications and Go's implementations publish.
///
/// Sources of the vectors:
/// - golang/mod sumdb/note/note_test.go (and the example in note.go's package doc): the PeterNeumann and EnochRoot
///   keys, the signed note Go's `Sign` must produce, and the malformed notes `Open` must refuse.
/// - transparency-dev/formats log/note_test.go: four signer/verifier key pairs, a real sum.golang.org checkpoint
///   (TestSumDBNoteParsing) and three cosignatures of it (BenchmarkParse); log/checkpoint_test.go: checkpoint texts.
/// - transparency-dev/trillian-tessera internal/parse/parse_test.go: a second sum.golang.org checkpoint and checkpoint
///   texts.
/// - golang/go src/cmd/go/internal/modfetch/key.go: the sum.golang.org verifier key.
/// - C2SP/C2SP signed-note.md and tlog-checkpoint.md: the example notes (no keys are published for them).
/// - RFC 8032 §7.1, TEST 1 and TEST 2: Ed25519 from a seed.
@Suite struct SignedNoteTests {
    // MARK: Go's test keys (golang/mod sumdb/note/note_test.go)

    static let peterVerifierKey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    static let peterSignerKey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
    static let enochVerifierKey = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
    static let text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
    static let peterSig = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    static let enochSig = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
    static let peter = NoteSignature(
        name: "PeterNeumann", keyID: 0xc74f20a3,
        base64: "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=")
    static let enoch = NoteSignature(
        name: "EnochRoot", keyID: 0xaf0cfe78,
        base64: "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=")

    /// Go's signer key `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>` (note.NewSigner), for the published test
    /// keys only: Veil never imports or exports a private key in this form.
    static func goSigner(_ key: String) throws -> NoteSigner {
        let parts = key.split(separator: "+", maxSplits: 4, omittingEmptySubsequences: false)
        try #require(parts.count == 5 && parts[0] == "PRIVATE" && parts[1] == "KEY")
        let raw = try #require(SignedNote.decodeBase64(String(parts[4])))
        try #require(raw.count == 33 && raw[0] == 0x01)
        let signer = try NoteSigner(name: String(parts[2]), keyPair: SigningKeyPair(seed: Array(raw.dropFirst())))
        #expect(SignedNote.hex8(signer.verifier.keyID) == parts[3], "the key ID of \(parts[2]) is derived from its seed")
        return signer
    }

    static func verifier(_ key: String) throws -> NoteVerifier { try NoteVerifier(verifierKey: key) }

    /// `s` with `insert` put in at UTF-8 offset `at`, as Go's `s[:at] + insert + s[at:]`.
    static func inserting(_ insert: String, into s: String, at: Int) -> String {
        let b = Array(s.utf8)
        return String(decoding: b[..<at] + Array(insert.utf8) + b[at...], as: UTF8.self)
    }

    @Test func goVerifierKeysParseAndPrintBack() throws {
        let peter = try Self.verifier(Self.peterVerifierKey)
        #expect(peter.name == "PeterNeumann")
        #expect(peter.keyID == 0xc74f20a3)
        #expect(peter.verifierKey == Self.peterVerifierKey)
        #expect(try NoteVerifier(name: "PeterNeumann", publicKey: peter.publicKey) == peter)
        let enoch = try Self.verifier(Self.enochVerifierKey)
        #expect(enoch.keyID == 0xaf0cfe78 && enoch.verifierKey == Self.enochVerifierKey)
    }

    /// TestNewVerifier: no substring of the key and no key with one byte incremented is accepted.
    @Test func everyManglingOfGoVerifierKeyIsRefused() throws {
        let b = Array(Self.peterVerifierKey.utf8)
        var accepted = [String]()
        for i in 0...b.count {
            for j in (i + 1)..<(b.count + 1) where i != 0 || j != b.count {
                let k = String(decoding: b[i..<j], as: UTF8.self)
                if (try? NoteVerifier(verifierKey: k)) != nil { accepted.append(k) }
            }
        }
        for i in b.indices {
            var m = b
            m[i] += 1
            let k = String(decoding: m, as: UTF8.self)
            if (try? NoteVerifier(verifierKey: k)) != nil { accepted.append(k) }
        }
        #expect(accepted.isEmpty, "\(accepted)")
        // Go's two hand-made keys: a 40-byte key and algorithm 0x65, each with its key ID adjusted to match.
        #expect(throws: NoteError.malformedVerifierKey) {
            try NoteVerifier(verifierKey: "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==")
        }
        #expect(throws: NoteError.unsupportedAlgorithm(0x65)) {
            try NoteVerifier(verifierKey: "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
        }
        #expect(throws: NoteError.keyIDMismatch) {
            try NoteVerifier(verifierKey: "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
        }
        #expect(throws: NoteError.invalidKeyName) {
            try NoteVerifier(verifierKey: "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
        }
    }

    /// TestSign: Ed25519 is deterministic, so the seed must give exactly Go's signature line.
    @Test func goSignerKeyReproducesThePublishedSignedNote() throws {
        let signer = try Self.goSigner(Self.peterSignerKey)
        #expect(signer.verifier.verifierKey == Self.peterVerifierKey)
        let want = Self.text + "\n" + Self.peterSig
        #expect(try signer.sign(Self.text) == want)
        #expect(try signer.signatureLine(for: Self.text) == Self.peterSig)
        let pair = try SigningKeyPair(seed: Array(try #require(SignedNote.decodeBase64("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")).dropFirst()))
        #expect(try SignedNote.sign(text: Self.text, name: "PeterNeumann", with: pair) == want)
        // Go's bad inputs: a text without its final newline, a name with a space.
        #expect(throws: NoteError.missingFinalNewline) { try signer.sign("abc") }
        #expect(throws: NoteError.invalidKeyName) { try SignedNote.sign(text: Self.text, name: "bad name", with: pair) }
    }

    /// transparency-dev/formats log/note_test.go: each Go signer key derives its published verifier key.
    @Test(arguments: [
        ("PRIVATE+KEY+Log+2271c621+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ", "Log+2271c621+AemuH5ooBpEPcr+W8onrjA1NfuzBVHdezakU81Ekarvs"),
        ("PRIVATE+KEY+Known+451c786d+AQPRoE2+Z+Ed1HaHBA9F/FfracvcZ2rDU39kCecMEoci", "Known+451c786d+AXAQ0T7lbwuY4ABJ9/MYY9bWV3hmSyOGVt2x42NkmdUH"),
        (
            "PRIVATE+KEY+KnownAgain+4893b26c+ARhZda/l25zjGZswYLDZsLNRzNpmv5wYTN9IoTr1OJ2+",
            "KnownAgain+4893b26c+AQ+LR7BFF/F/dkpIBjBpSvT0crkteizuUkavAoGeaYMj"
        ),
        (
            "PRIVATE+KEY+Unknown+fdbb2e08+Aav2knTC6orbhXX8pMWuNiWgO+Wwk2DB+h1eU2Q1W1nU",
            "Unknown+fdbb2e08+AWgRIYZ+8x1Vl+1Q+sR8zciNHiYI1SdlBjNw+RV0rots"
        ),
    ])
    func formatsSignerKeysDeriveTheirVerifierKeys(signerKey: String, verifierKey: String) throws {
        let signer = try Self.goSigner(signerKey)
        #expect(signer.verifier.verifierKey == verifierKey)
        #expect(try Self.verifier(verifierKey) == signer.verifier)
        let note = try signer.sign("checkpoint\n1\n\(String(repeating: "A", count: 43))=\n")
        #expect(try SignedNote.open(note, verifiers: [Self.verifier(verifierKey)]).signatures.map(\.name) == [signer.verifier.name])
    }

    // MARK: Opening Go's notes (TestOpen)

    @Test func goNoteOpensWithTheKeysThatSignedIt() throws {
        let peter = try Self.verifier(Self.peterVerifierKey), enoch = try Self.verifier(Self.enochVerifierKey)
        let note = Self.text + "\n" + Self.peterSig + Self.enochSig

        let one = try SignedNote.open(note, verifiers: [peter])
        #expect(one.text == Self.text)
        #expect(one.signatures == [Self.peter])  // EnochRoot's is skipped, not refused

        let both = try SignedNote.open(note, verifiers: [peter, enoch])
        #expect(both.signatures == [Self.peter, Self.enoch])

        #expect(throws: NoteError.noVerifiedSignature) { try SignedNote.open(note, verifiers: []) }
        // The same verifier listed twice is one key (Go calls the list ambiguous).
        #expect(try SignedNote.open(Self.text + "\n" + Self.peterSig, verifiers: [enoch, peter, enoch]).signatures == [Self.peter])
    }

    @Test func goNoteWithAChangedSignatureIsRefused() throws {
        let peter = try Self.verifier(Self.peterVerifierKey)
        let bad = Self.text + "\n" + Self.inserting("ABCD", into: Self.peterSig, at: 60)
        #expect(throws: NoteError.invalidSignature(name: "PeterNeumann", keyID: 0xc74f20a3)) {
            try SignedNote.open(bad, verifiers: [peter])
        }
        // Unknown keys' signatures, changed or repeated, are skipped; repeats of a known one are one signature.
        let enochABCD = Self.inserting("ABCD", into: Self.enochSig, at: 60)
        let repeated = Self.text + "\n" + Self.peterSig + Self.peterSig + Self.enochSig + Self.enochSig + enochABCD
        #expect(try SignedNote.open(repeated, verifiers: [peter]).signatures == [Self.peter])
    }

    @Test func moreThanAHundredSignaturesAreRefused() throws {
        let peter = try Self.verifier(Self.peterVerifierKey)
        let note = Self.text + "\n" + String(repeating: Self.peterSig, count: 101)
        #expect(throws: NoteError.tooManySignatures(limit: 100)) { try SignedNote.open(note, verifiers: [peter]) }
        #expect(throws: NoteError.tooManySignatures(limit: 100)) { try SignedNote.open(note, verifiers: []) }
        #expect(try SignedNote.open(Self.text + "\n" + String(repeating: Self.peterSig, count: 100), verifiers: [peter]).text == Self.text)
    }

    /// TestOpen's malformed notes, each with the error that names its fault.
    @Test func goMalformedNotesAreRefusedForTheirFault() throws {
        let peter = try Self.verifier(Self.peterVerifierKey)
        let cases: [([UInt8], NoteError)] = [
            (Array(Self.text.utf8), .noSignatures),
            (Array((Self.text + "\n").utf8), .noSignatures),
            (Array((Self.text + "\n" + Self.peterSig.dropLast()).utf8), .missingFinalNewline),
            (Array(("\u{1}" + Self.text + "\n" + Self.peterSig).utf8), .controlCharacter(0x01)),
            ([0xff] + Array((Self.text + "\n" + Self.peterSig).utf8), .invalidUTF8),
            (
                Array(
                    (Self.text + "\n" + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=")
                        .utf8),
                .missingFinalNewline
            ),
            (
                Array(
                    (Self.text + "\n" + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")
                        .utf8),
                .malformedSignatureLine(1)
            ),
            (Array((Self.text + "\n" + Self.peterSig + "Unexpected line.\n").utf8), .malformedSignatureLine(2)),
        ]
        for (note, error) in cases {
            #expect(throws: error, "\(String(decoding: note, as: UTF8.self).debugDescription)") { try SignedNote.open(note, verifiers: [peter]) }
        }
    }

    /// Lines that are not `— <name> <canonical padded base64 of at least 5 bytes>`.
    @Test(arguments: [
        "- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",  // hyphen
        "—PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",  // no space
        "— PeterNeumann",
        "— PeterNeumann ",
        "—  x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",  // empty name
        "— Peter+Neumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
        "— Peter\u{A0}Neumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
        "— PeterNeumann  x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
        "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM",  // unpadded
        // Non-zero trailing bits (M -> N): Go's StdEncoding decodes this to the same bytes; Veil takes one spelling.
        "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAN=",
        "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM= x",
        "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM===",
        "— PeterNeumann AAAAAA==",  // a key ID and no signature
        "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\r",
    ])
    func malformedSignatureLinesAreRefused(line: String) throws {
        let note = Self.text + "\n" + Self.peterSig + line + "\n"
        let expected: NoteError = line.hasSuffix("\r") ? .controlCharacter(0x0d) : .malformedSignatureLine(2)
        #expect(throws: expected) { try SignedNote.open(note, verifiers: [Self.verifier(Self.peterVerifierKey)]) }
    }

    /// A blank line after the signatures makes it the separator, with no signatures after it (as in Go).
    @Test func aBlankLineAfterTheSignaturesLeavesNone() throws {
        #expect(throws: NoteError.noSignatures) {
            try SignedNote.open(Self.text + "\n" + Self.peterSig + "\n", verifiers: [Self.verifier(Self.peterVerifierKey)])
        }
    }

    // MARK: Real checkpoints of the Go checksum database

    /// golang/go src/cmd/go/internal/modfetch/key.go.
    static let sumDBVerifierKey = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
    /// transparency-dev/formats log/note_test.go, TestSumDBNoteParsing.
    static let sumDBNote =
        "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\n"
        + "— sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n"

    @Test func sumGolangOrgCheckpointsVerifyAndParse() throws {
        let sumDB = try Self.verifier(Self.sumDBVerifierKey)
        let opened = try SignedNote.open(Self.sumDBNote, verifiers: [sumDB])
        #expect(opened.signatures.map(\.keyID) == [0x033de0ae])
        let checkpoint = try Checkpoint(text: opened.text)
        #expect(checkpoint.origin == "go.sum database tree")
        #expect(checkpoint.size == 6476701)
        #expect(checkpoint.rootHash.hexString == "99bf102d022cd19d323f90acb6aea0ba3f3ba1759e0bd80433ca158a49a6f569")
        #expect(checkpoint.extensions.isEmpty)
        #expect(checkpoint.text == opened.text)

        // transparency-dev/trillian-tessera internal/parse/parse_test.go, BenchmarkCheckpointUnsafe (which leaves off
        // the last newline; it is put back here).
        let tessera =
            "go.sum database tree\n31700353\nqINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=\n\n"
            + "— sum.golang.org Az3grnmrIUEDFqHzAElIQCPNoRFRAAdFo47fooyWKMHb89k11GJh5zHIfNCOBmwn/C3YI8oW9/C8DJ87F61QqspBYwM=\n"
        #expect(try Checkpoint(text: SignedNote.open(tessera, verifiers: [sumDB]).text).size == 31700353)

        // A size changed by one digit no longer verifies.
        let changed = Self.sumDBNote.replacingOccurrences(of: "6476701", with: "6476702")
        #expect(throws: NoteError.invalidSignature(name: "sum.golang.org", keyID: 0x033de0ae)) {
            try SignedNote.open(changed, verifiers: [sumDB])
        }
    }

    /// transparency-dev/formats log/note_test.go, BenchmarkParse: three cosignatures of the checkpoint above, and two
    /// lines reusing one of them under unknown names.
    @Test func cosignaturesOfTheSumDBCheckpointVerify() throws {
        let sumDB = try Self.verifier(Self.sumDBVerifierKey)
        let cosigners = try [
            "monkeys+db4d9f7e+AULaJMvTtDLHPUcUrjdDad9vDlh/PTfC2VV60JUtCfWT",
            "bananas+cf639f13+AaPjhFnPCQnid/Ql32KWhmh+uk72FVRfK+2DLmO3BI3M",
            "witness+f13a86db+AdYV1Ztajd9BvyjP2HgpwrqYL6TjOwIjGMOq8Bu42xbN",
        ].map(Self.verifier)
        let note =
            Self.sumDBNote
            + "— monkeys 202ffh9ve46Mqbhuyb4wnC2Pwdan5EsXQym/tF1ggXJqhjGosU4T5intH4iKMRgDLxrnXuIjRaU2NbvAnaepM6Y+8ww=\n"
            + "— bananas z2OfE+2bbsBZ7NLgfuslc0v7NFW2QyexJ7fhePpoL2N/P7N/COd5S+JNHbQEAlYzz2C5sg0E+x/MggS1mDR6t3/9rQw=\n"
            + "— witness 8TqG25yWGFLdT7WPf/WoyeG3LwqtkXP+8S3yykOVm6EMh4hPgCke6eSVPU4BdtXNMPJBXKF+UpDbGgCdcpR8SVSoqAU=\n"
            + "— random1 8TqG25yWGFLdT7WPf/WoyeG3LwqtkXP+8S3yykOVm6EMh4hPgCke6eSVPU4BdtXNMPJBXKF+UpDbGgCdcpR8SVSoqAU=\n"
            + "— random2 8TqG25yWGFLdT7WPf/WoyeG3LwqtkXP+8S3yykOVm6EMh4hPgCke6eSVPU4BdtXNMPJBXKF+UpDbGgCdcpR8SVSoqAU=\n"
        let opened = try SignedNote.open(note, verifiers: [sumDB] + cosigners)
        #expect(opened.signatures.map(\.name) == ["sum.golang.org", "monkeys", "bananas", "witness"])
        // A witness alone is enough for `open`; which signers a caller requires is the caller's policy.
        #expect(try SignedNote.open(note, verifiers: [cosigners[2]]).signatures.map(\.name) == ["witness"])
    }

    // MARK: The specifications' examples (C2SP/C2SP signed-note.md, tlog-checkpoint.md)

    @Test func signedNoteSpecExampleIsWellFormedButSignedByAnUnknownKey() throws {
        let note =
            "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n\n"
            + "— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
        // The text keeps its own blank line: only the last one separates the signatures.
        let (text, lines) = try SignedNote.parse(Array(note.utf8))
        #expect(
            String(decoding: text, as: UTF8.self) == "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n")
        #expect(lines.map(\.signature.name) == ["quasimodo.example/salvatore"])
        #expect(lines.map(\.signature.keyID) == [0x367ba04b])
        #expect(lines.map(\.signatureBytes.count) == [64])
        // The specification publishes no key for it: no verifier list opens it, not even one with the same name.
        let sameName = try NoteVerifier(name: "quasimodo.example/salvatore", publicKey: SigningKeyPair.generate().publicKey)
        #expect(throws: NoteError.noVerifiedSignature) { try SignedNote.open(note, verifiers: [sameName]) }
    }

    @Test func checkpointSpecExampleParses() throws {
        let note =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
            + "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
        let (text, lines) = try SignedNote.parse(Array(note.utf8))
        let checkpoint = try Checkpoint(text: String(decoding: text, as: UTF8.self))
        #expect(checkpoint.origin == "example.com/behind-the-sofa")
        #expect(checkpoint.size == 20852163)
        #expect(checkpoint.rootHash.hexString == "0ac5186a91863e8e1d90c808014aa89bf5da8e3ee1d9f07630f0378f68f1ab62")
        #expect(checkpoint.text == String(decoding: text, as: UTF8.self))
        // Its signature carries sum.golang.org's key ID under another name: an unknown key, so skipped, never tried.
        #expect(lines.map(\.signature.keyID) == [0x033de0ae])
        #expect(throws: NoteError.noVerifiedSignature) { try SignedNote.open(note, verifiers: [Self.verifier(Self.sumDBVerifierKey)]) }
    }

    // MARK: Checkpoint text

    @Test(arguments: [
        // transparency-dev/formats log/checkpoint_test.go (its hashes are not 32 bytes: it leaves the length to callers)
        ("Log\n123\nYmFuYW5hcw==\n", NoteError.wrongRootHashLength(7)),
        ("Moon Log\n4027504\naXQncyBhIHJvb3QgaGFzaA==\n6086d1a9\nWaxing gibbous\n", .wrongRootHashLength(16)),
        ("Head\n9944\n", .checkpointTooShort(lines: 2)),
        ("\n9944\ndGhlIHZpZXcgZnJvbSB0aGUgdHJlZSB0b3BzIGlzIGdyZWF0IQ==\n", .emptyOrigin),
        ("Log\n123\nYmFuYW5hcw==", .missingFinalNewline),
        ("Log\nbananas\ndGhlIHZpZXcgZnJvbSB0aGUgdHJlZSB0b3BzIGlzIGdyZWF0IQ==\n", .malformedTreeSize),
        ("Log\n-34\ndGhlIHZpZXcgZnJvbSB0aGUgdHJlZSB0b3BzIGlzIGdyZWF0IQ==\n", .malformedTreeSize),
        ("Log\n3438945738945739845734895735\ndGhlIHZpZXcgZnJvbSB0aGUgdHJlZSB0b3BzIGlzIGdyZWF0IQ==\n", .malformedTreeSize),
        ("Log\n123\nThisIsn'tBase64\n", .malformedRootHash),
        ("Log\n9944\ndGhlIHZpZXcgZnJvbSB0aGUgdHJlZSB0b3BzIGlzIGdyZWF0IQ==\n\n\n\n", .wrongRootHashLength(37)),
        // transparency-dev/trillian-tessera internal/parse/parse_test.go (its "Empty origin" is accepted there; the
        // specification says the origin MUST be non-empty)
        ("original.example.com\n-42\n\(sampleRoot)\n", .malformedTreeSize),
        ("original.example.com\n42\nthisisnotright\n", .malformedRootHash),
        ("\n42\n\(sampleRoot)\n", .emptyOrigin),
        ("42\n\(sampleRoot)\n", .checkpointTooShort(lines: 2)),
        // tlog-checkpoint's rules
        ("log\n007\n\(sampleRoot)\n", .malformedTreeSize),
        ("log\n00\n\(sampleRoot)\n", .malformedTreeSize),
        ("log\n+5\n\(sampleRoot)\n", .malformedTreeSize),
        ("log\n 5\n\(sampleRoot)\n", .malformedTreeSize),
        ("log\n5 \n\(sampleRoot)\n", .malformedTreeSize),
        ("log\n0x10\n\(sampleRoot)\n", .malformedTreeSize),
        ("log\n\n\(sampleRoot)\n", .malformedTreeSize),
        ("log\n18446744073709551616\n\(sampleRoot)\n", .malformedTreeSize),
        ("log\n5\n\(Data(repeating: 7, count: 31).base64EncodedString())\n", .wrongRootHashLength(31)),
        ("log\n5\n\(Data(repeating: 7, count: 33).base64EncodedString())\n", .wrongRootHashLength(33)),
        ("log\n5\n\(sampleRoot.dropLast())\n", .malformedRootHash),  // unpadded
        ("log\n5\nqINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVct=\n", .malformedRootHash),  // non-zero trailing bits
        ("log\n5\n\(sampleRoot) \n", .malformedRootHash),
        ("log\n5\n\(sampleRoot)\n\n", .emptyExtensionLine),
        ("log\n5\n\(sampleRoot)\next\n\nmore\n", .emptyExtensionLine),
        ("log\n5\n\(sampleRoot)\next\twith a tab\n", .controlCharacter(0x09)),
        ("log\r\n5\n\(sampleRoot)\n", .controlCharacter(0x0d)),
        ("", .missingFinalNewline),
    ])
    func malformedCheckpointsAreRefusedForTheirFault(text: String, error: NoteError) {
        #expect(throws: error) { try Checkpoint(text: text) }
    }

    @Test func checkpointTextRoundTrips() throws {
        let root = try #require(SignedNote.decodeBase64(sampleRoot))
        for (size, line) in [(UInt64(0), "0"), (1, "1"), (UInt64.max, "18446744073709551615")] {
            let text = "example.com/log42\n\(line)\n\(sampleRoot)\nfirst extension\n— second, with a dash\n"
            let checkpoint = try Checkpoint(text: text)
            #expect(
                checkpoint
                    == (try Checkpoint(
                        origin: "example.com/log42", size: size, rootHash: root,
                        extensions: ["first extension", "— second, with a dash"])))
            #expect(checkpoint.text == text)
        }
        // Origins need not be URLs (Go's checksum database calls itself "go.sum database tree").
        #expect(try Checkpoint(text: "Moon Log\n4027504\n\(sampleRoot)\n").origin == "Moon Log")
    }

    @Test func checkpointFieldsAreChecked() throws {
        let root = [UInt8](repeating: 1, count: 32)
        #expect(throws: NoteError.emptyOrigin) { try Checkpoint(origin: "", size: 1, rootHash: root) }
        #expect(throws: NoteError.newlineInLine) { try Checkpoint(origin: "a\nb", size: 1, rootHash: root) }
        #expect(throws: NoteError.controlCharacter(0x00)) { try Checkpoint(origin: "a\u{0}b", size: 1, rootHash: root) }
        #expect(throws: NoteError.wrongRootHashLength(31)) { try Checkpoint(origin: "a", size: 1, rootHash: Array(root.dropLast())) }
        #expect(throws: NoteError.emptyExtensionLine) { try Checkpoint(origin: "a", size: 1, rootHash: root, extensions: [""]) }
        #expect(throws: NoteError.newlineInLine) { try Checkpoint(origin: "a", size: 1, rootHash: root, extensions: ["x\ny"]) }
    }

    // MARK: Veil's own notes

    static func freshSigner(_ name: String = "veil.example/audit") throws -> NoteSigner {
        try NoteSigner(name: name, keyPair: .generate())
    }

    @Test func aSignedCheckpointOpensAndParsesBack() throws {
        let signer = try Self.freshSigner()
        let leaves = (0..<37).map { Merkle.leafHash(Array("entry \($0)".utf8)) }
        let checkpoint = try Checkpoint(origin: "veil.example/audit", size: 37, rootHash: Merkle.root(of: leaves), extensions: ["v1"])
        let note = try signer.sign(checkpoint.text)
        let verifier = try NoteVerifier(verifierKey: signer.verifier.verifierKey)
        #expect(verifier == signer.verifier)
        let opened = try SignedNote.open(note, verifiers: [verifier])
        #expect(opened.signatures.map(\.name) == ["veil.example/audit"])
        #expect(opened.signatures.map(\.keyID) == [signer.verifier.keyID])
        #expect(try Checkpoint(text: opened.text) == checkpoint)
        // A witness appends its cosignature line; both then verify.
        let witness = try Self.freshSigner("witness.example/w1")
        let cosigned = note + (try witness.signatureLine(for: opened.text))
        #expect(try SignedNote.open(cosigned, verifiers: [verifier, witness.verifier]).signatures.count == 2)
    }

    /// Each changed byte of the text or of a signature refuses the note with the key named; a changed key ID makes the
    /// signature a stranger's.
    @Test func aChangedByteRefusesTheNote() throws {
        let signer = try Self.freshSigner()
        let note = Array(try signer.sign("example.com/log\n12\n\(sampleRoot)\n").utf8)
        let invalid = NoteError.invalidSignature(name: "veil.example/audit", keyID: signer.verifier.keyID)
        let textCount = note.count - Array(try signer.signatureLine(for: "x\n").utf8).count - 1  // same-length line
        for i in 0..<(textCount - 1) where note[i] != UInt8(ascii: "\n") {
            var changed = note
            changed[i] ^= 0x01  // stays printable ASCII, and never becomes a newline
            #expect(throws: invalid, "text byte \(i)") { try SignedNote.open(changed, verifiers: [signer.verifier]) }
        }
        let line = String(decoding: note[textCount...], as: UTF8.self)
        let base64 = String(line.split(separator: " ")[2].dropLast())
        var raw = try #require(SignedNote.decodeBase64(base64))
        for i in raw.indices {
            raw[i] ^= 0x80
            let changed = String(decoding: note[...textCount], as: UTF8.self) + "— veil.example/audit \(Data(raw).base64EncodedString())\n"
            raw[i] ^= 0x80
            #expect(throws: i < 4 ? .noVerifiedSignature : invalid, "signature byte \(i)") {
                try SignedNote.open(changed, verifiers: [signer.verifier])
            }
        }
    }

    @Test func otherKeysDoNotOpenTheNote() throws {
        let signer = try Self.freshSigner()
        let note = try signer.sign("example.com/log\n12\n\(sampleRoot)\n")
        // The same name with another key: another key ID, so the signature is a stranger's.
        let other = try Self.freshSigner().verifier
        #expect(throws: NoteError.noVerifiedSignature) { try SignedNote.open(note, verifiers: [other]) }
        // Another key that claims the signer's name and key ID (a collision of the 32-bit ID) is tried, and fails.
        let impostor = NoteVerifier(name: other.name, keyID: signer.verifier.keyID, publicKey: other.publicKey)
        #expect(throws: NoteError.invalidSignature(name: "veil.example/audit", keyID: signer.verifier.keyID)) {
            try SignedNote.open(note, verifiers: [impostor])
        }
        #expect(throws: NoteError.ambiguousKey(name: "veil.example/audit", keyID: signer.verifier.keyID)) {
            try SignedNote.open(note, verifiers: [signer.verifier, impostor])
        }
    }

    /// A second, different signature by the same key is checked too: a bad one refuses the note even after a good one.
    @Test func aBadDuplicateSignatureByAKnownKeyIsRefused() throws {
        let signer = try Self.freshSigner()
        let text = "example.com/log\n12\n\(sampleRoot)\n"
        let note = try signer.sign(text)
        let otherLine = try signer.signatureLine(for: "example.com/log\n13\n\(sampleRoot)\n")
        #expect(throws: NoteError.invalidSignature(name: "veil.example/audit", keyID: signer.verifier.keyID)) {
            try SignedNote.open(note + otherLine, verifiers: [signer.verifier])
        }
        // The same line twice is one signature.
        #expect(try SignedNote.open(note + signer.signatureLine(for: text), verifiers: [signer.verifier]).signatures.count == 1)
    }

    @Test func notesNoReaderCouldOpenAreNotSigned() throws {
        let signer = try Self.freshSigner()
        #expect(throws: NoteError.missingFinalNewline) { try signer.sign("example.com/log\n12\n\(sampleRoot)") }
        #expect(throws: NoteError.controlCharacter(0x09)) { try signer.sign("tab\there\n") }
        #expect(throws: NoteError.controlCharacter(0x0d)) { try signer.sign("crlf\r\n") }
        for name in ["", "a+b", "a b", "a\tb", "a\u{A0}b", "a\u{2003}b", "a\u{3000}b", "a\nb"] {
            #expect(throws: NoteError.invalidKeyName, "\(name.debugDescription)") { try Self.freshSigner(name) }
        }
        // Non-ASCII names and DEL are allowed (only controls below U+0020 are not).
        let unicode = try Self.freshSigner("transparência.example/registo")
        let note = try unicode.sign("caf\u{E9} \u{7F}\n")
        #expect(try SignedNote.open(note, verifiers: [unicode.verifier]).text == "caf\u{E9} \u{7F}\n")
    }

    @Test func invalidUTF8AndControlCharactersAreRefused() throws {
        let signer = try Self.freshSigner()
        let line = Array(try signer.signatureLine(for: "x\n").utf8)
        for (text, error) in [
            ([0xed, 0xa0, 0x80, 0x0a], NoteError.invalidUTF8), ([0xc0, 0xaf, 0x0a], .invalidUTF8),
            ([0x61, 0x00, 0x0a], .controlCharacter(0)), ([0x61, 0x1b, 0x0a], .controlCharacter(0x1b)),
        ] as [([UInt8], NoteError)] {
            #expect(throws: error) { try SignedNote.open(text + [0x0a] + line, verifiers: [signer.verifier]) }
        }
    }

    @Test func errorsNameTheRuleAndTheKeyOnly() throws {
        #expect(
            "\(NoteError.invalidSignature(name: "PeterNeumann", keyID: 0x0c74f20a))" == "the signature by key PeterNeumann+0c74f20a does not verify")
        #expect("\(NoteError.controlCharacter(0x09))" == "the note holds control character 0x09; only newline is allowed")
        #expect("\(NoteError.wrongRootHashLength(31))" == "the root hash is 31 bytes, not 32")
    }

    // MARK: Ed25519 from a seed (RFC 8032 §7.1)

    @Test(arguments: [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb", "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        ),
    ])
    func seedGivesTheRFC8032KeyAndSignature(seed: String, publicKey: String, message: String, signature: String) throws {
        let pair = try SigningKeyPair(seed: try #require([UInt8](hexString: seed)))
        #expect(pair.publicKey.bytes.hexString == publicKey)
        let message = try #require([UInt8](hexString: message))
        #expect(pair.sign(message).hexString == signature)
        #expect(pair.publicKey.isValidSignature(pair.sign(message), for: message))
    }

    @Test func seedsOfTheWrongLengthAreRefused() {
        for count in [0, 31, 33, 64] {
            #expect(throws: VaultError(.invalidKeyLength, "")) { try SigningKeyPair(seed: [UInt8](repeating: 1, count: count)) }
        }
    }
}
