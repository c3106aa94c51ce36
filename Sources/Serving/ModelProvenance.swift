import Foundation
import Storage
import Vault

/// Whom a model was trained on, for a compliance officer: how many subjects, one keyed digest of all their tokens
/// (so two models trained on the same people have the same digest, and nobody without the key can test a guess),
/// and a keyed digest per subject to answer "is this subject's data in the served model?". No token is kept.
public struct ModelProvenance: Sendable {
    public let subjects: Int
    /// Hex BLAKE2b-256, keyed, over the sorted per-subject digests.
    public let digest: String
    private let members: Set<Member>

    private struct Member: Hashable, Sendable {
        let high: UInt64, low: UInt64
    }

    public init(tokens: [SubjectToken], fingerprinter: Fingerprinter) {
        var members = Set<Member>()
        members.reserveCapacity(tokens.count)
        for token in tokens { members.insert(Self.member(token.rawValue, fingerprinter)) }
        var all: [UInt8] = []
        all.reserveCapacity(members.count * 16)
        for m in members.sorted(by: { ($0.high, $0.low) < ($1.high, $1.low) }) {
            withUnsafeBytes(of: m.high.bigEndian) { all += $0 }
            withUnsafeBytes(of: m.low.bigEndian) { all += $0 }
        }
        subjects = members.count
        digest = fingerprinter.digest(all).hexString
        self.members = members
    }

    /// Whether `token` was among the model's training subjects.
    public func contains(_ token: String, fingerprinter: Fingerprinter) -> Bool { members.contains(Self.member(token, fingerprinter)) }

    private static func member(_ token: String, _ fingerprinter: Fingerprinter) -> Member {
        let bytes = fingerprinter.digest(Array(token.utf8), length: 16)
        return bytes.withUnsafeBytes { raw in
            Member(
                high: UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                low: UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
        }
    }
}

extension ModelProvenance {
    /// The per-subject digests as (high, low) words in ascending order: with `subjects` and `digest`, what an encoding
    /// keeps to rebuild the provenance exactly, since the tokens it was made from are not kept.
    var memberWords: [UInt64] {
        var words: [UInt64] = []
        words.reserveCapacity(members.count * 2)
        for m in members.sorted(by: { ($0.high, $0.low) < ($1.high, $1.low) }) {
            words.append(m.high)
            words.append(m.low)
        }
        return words
    }

    /// Nil unless the words are pairs of distinct members, as many as `subjects`.
    init?(subjects: Int, digest: String, memberWords words: [UInt64]) {
        guard words.count % 2 == 0, words.count / 2 == subjects else { return nil }
        var members = Set<Member>()
        members.reserveCapacity(subjects)
        for k in stride(from: 0, to: words.count, by: 2) { members.insert(Member(high: words[k], low: words[k + 1])) }
        guard members.count == subjects else { return nil }
        self.subjects = subjects
        self.digest = digest
        self.members = members
    }
}
