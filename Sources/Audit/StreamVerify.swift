import Foundation
import Vault

/// Verifies a log handed over entry by entry, in order, from outside its own file: another gateway's log as it was
/// shipped to the database the gateways share. The same checks as ``AuditReader/verify(publicKey:logName:trustedHeads:trustedVerifier:)``
/// (each entry's digest and link, the tree's root at every signed and every trusted head) and the same answer, so
/// that a copy of a log is held to what its signed heads say, wherever it is kept.
public struct StreamedLogVerification: Sendable {
    private let verifier: NoteVerifier
    private let publicKey: SigningPublicKey
    private let heads: [AuditCheckpoint]
    private let trusted: [(size: Int64, root: MerkleNode)]
    private var failures: [(Int64, String)]
    private let sizes: Set<Int64>
    private var scan = AuditReader.Scan()
    private var edge = CompactRange()
    private var previous = AuditLog.genesisHash
    /// Entries handed over, including any after the first failure.
    private var count: Int64 = 0

    /// - Parameters:
    ///   - heads: the log's own signed heads, as shipped.
    ///   - trustedHeads: signed notes of this log kept elsewhere; each must be signed by `trustedVerifier` (by default
    ///     the audit key under the log's own origin).
    public init(
        publicKey: SigningPublicKey, logName: String?, heads: [AuditCheckpoint], trustedHeads: [String] = [],
        trustedVerifier: NoteVerifier? = nil
    ) throws {
        self.publicKey = publicKey
        verifier = try trustedVerifier ?? HeadSigner.verifier(for: publicKey, logName: logName)
        (trusted, failures) = try AuditReader.openTrusted(trustedHeads, verifier: verifier)
        self.heads = heads
        sizes = Set(heads.map(\.size) + trusted.map(\.size)).filter { $0 >= 1 }
    }

    /// Whether the scan stopped at a broken entry (later ones are only counted).
    public var stopped: Bool { scan.failure != nil }

    /// Takes the next entry; `sequence` is where the copy placed it.
    public mutating func add(_ entry: AuditEntry, at sequence: Int64) {
        count += 1
        guard scan.failure == nil else { return }
        let expected = Int64(edge.size) + 1
        guard sequence == expected, entry.sequence == sequence else {
            scan.failure = (min(sequence, expected), "expected entry \(expected), found \(sequence) (entry removed, inserted or reordered)")
            return
        }
        guard entry.previousHash == previous else {
            scan.failure = (sequence, "link to the previous entry is broken")
            return
        }
        if entry.record.subjectToken == "-" || entry.record.purpose == "-" {
            scan.failure = (sequence, "entry \(sequence) holds a field of a value Veil never writes (the copy was edited)")
            return
        }
        let digest = AuditEntry.computeHash(sequence: sequence, at: entry.at, record: entry.record, previousHash: entry.previousHash)
        guard digest == entry.hash, let node = Array(digest.utf8).withUnsafeBytes({ MerkleNode(hex: $0) }) else {
            scan.failure = (sequence, "entry content does not match its hash")
            return
        }
        previous = digest
        edge.append(MerkleNode.leaf(of: node))
        if sizes.contains(sequence) {
            scan.roots[sequence] = edge.root
            scan.chain[sequence] = digest
        }
    }

    /// Marks entry `sequence` as failing for a reason only the copy's keeper can see (its index disagrees with it, it
    /// cannot be decoded).
    public mutating func fail(at sequence: Int64, _ reason: String) {
        count += 1
        if scan.failure == nil { scan.failure = (sequence, reason) }
    }

    /// The verdict once every entry was handed over.
    public func finish() -> AuditVerification {
        var failures = self.failures
        let entries = Int64(edge.size) + (scan.failure == nil ? 0 : 1)
        if let failure = scan.failure { failures.append(failure) }
        let validThrough = scan.failure.map { $0.0 - 1 } ?? Int64(edge.size)
        var result = AuditVerification(entries: count, checkpoints: heads.count, trustedHeads: trusted.count)
        let matched = AuditReader.matchTrusted(trusted, scan: scan, entries: max(entries, count), count: count, failures: &failures)
        result.trustedThrough = matched
        result.signedThrough = AuditReader.checkHeads(
            stored: heads, legacy: [], verifier: verifier, publicKey: publicKey, scan: scan, entries: max(entries, count), count: count,
            validThrough: validThrough, failures: &failures)
        result.report(failures)
        if !trusted.isEmpty, result.intact, matched > 0 { result.proves = AuditVerification.againstTrusted(matched) }
        return result
    }
}

extension AuditCheckpoint {
    /// A head known by its signed note alone (as shipped): size and root as the note says, for verification to check
    /// against its signature.
    public init(note: String, size: Int64, at: Int64) {
        let root = note.split(separator: "\n", omittingEmptySubsequences: false).dropFirst(2).first.map(String.init) ?? ""
        self.init(size: size, rootHash: root, at: at, note: note)
    }
}

extension AuditVerification {
    /// A log that could not be checked at all, failing at its first entry for `reason`.
    public init(failedLog log: String, reason: String) {
        self.init(entries: 0, checkpoints: 0)
        self.log = log
        report([(1, reason)])
    }

    /// Adds a failure of the log as a whole, at `sequence`, to what verification found.
    public mutating func fail(at sequence: Int64, _ reason: String) {
        report((failures ?? []).map { ($0.sequence, $0.reason) } + [(sequence, reason)])
    }
}

extension AuditConsistencyProof {
    /// The consistency proof from the tree of `from` entries to `head`, for a log known by its entries' digests (hex,
    /// entries 1…`head.size` in order): a copy of another gateway's log. A digest an editor changed yields a proof
    /// that fails against the heads a witness holds, which is what the witness is for.
    public static func fromDigests(
        _ digests: [String], from: Int64, head: AuditCheckpoint, fromHead: AuditCheckpoint?
    ) throws -> AuditConsistencyProof {
        guard from >= 1, from <= head.size else {
            throw AuditProofError.invalidRange("from must be between 1 and the head's size \(head.size), found \(from)")
        }
        guard Int64(digests.count) == head.size else {
            throw AuditProofError.invalidRange("the copy holds \(digests.count) of the \(head.size) entries the head covers")
        }
        let leaves = try digests.map { hex -> [UInt8] in
            guard let digest = [UInt8](hexString: hex), digest.count == 32 else {
                throw AuditProofError.invalidRange("the copy holds an entry digest that is not 32 bytes of hex")
            }
            return Merkle.leafHash(digest)
        }
        let path = try Merkle.consistencyProof(from: Int(from), leafHashes: leaves)
        return AuditConsistencyProof(
            from: from, to: head.size, hashes: path.map { Data($0).base64EncodedString() }, checkpoint: head, fromCheckpoint: fromHead)
    }
}
