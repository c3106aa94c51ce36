import Vault

/// RFC 6962 / RFC 9162 Merkle tree primitives over SHA-256: the hashes, proof generation and proof verification that
/// make the audit log a transparency log (issue #23). Pure functions, no I/O.
///
/// Hashes are 32-byte `[UInt8]` at the API; inside, they are 32-byte inline values so that hashing a tree allocates
/// (almost) nothing per node. Tree sizes and indices in verification are `UInt64`, as on the wire; generation takes
/// `Int` offsets into a collection of leaf hashes.
public enum Merkle: Sendable {
    /// Bytes in every hash of the tree.
    public static let hashCount = 32

    /// MTH({}) = SHA-256(""): the root of the empty tree.
    public static let emptyRoot: [UInt8] = Hash.sha256([])

    /// SHA-256(0x00 || leaf): the hash of one log entry.
    public static func leafHash(_ leaf: [UInt8]) -> [UInt8] {
        var input = [UInt8]()
        input.reserveCapacity(leaf.count + 1)
        input.append(0x00)
        input.append(contentsOf: leaf)
        return Hash.sha256(input)
    }

    /// SHA-256(0x01 || left || right): the hash of an interior node.
    public static func nodeHash(_ left: [UInt8], _ right: [UInt8]) -> [UInt8] {
        if let l = MerkleNode(left), let r = MerkleNode(right) { return MerkleNode.parent(l, r).bytes }
        return Hash.sha256([0x01] + left + right)
    }

    // MARK: Tree hash and proof generation (RFC 6962 §2.1)

    /// MTH(D[n]) of the leaves whose hashes are given, in O(n) node hashes and O(log n) memory.
    /// - Throws: `.malformedHash` if a leaf hash is not 32 bytes.
    public static func root(of leafHashes: some RandomAccessCollection<[UInt8]>) throws(MerkleError) -> [UInt8] {
        if leafHashes.isEmpty { return emptyRoot }
        return try subtreeRoot(leafHashes, 0, leafHashes.count).bytes
    }

    /// PATH(index, D[n]): the audit path of leaf `index` in the tree of `leafHashes`, ordered from the leaf's sibling
    /// up to the root's child, as `verifyInclusion` expects.
    /// - Throws: `.indexOutOfRange` unless 0 <= index < n; `.malformedHash` if a leaf hash is not 32 bytes.
    public static func inclusionProof(
        index: Int, leafHashes: some RandomAccessCollection<[UInt8]>
    ) throws(MerkleError) -> [[UInt8]] {
        let n = leafHashes.count
        guard index >= 0, index < n else { throw .indexOutOfRange(index: UInt64(clamping: index), size: UInt64(n)) }
        return try inclusionPath(index: index, size: n) { (lo, hi) throws(MerkleError) in try subtreeRoot(leafHashes, lo, hi) }.map(\.bytes)
    }

    /// PROOF(m, D[n]): the consistency proof from the tree of the first `m` leaves to the tree of all `leafHashes`
    /// (n of them). Empty when m == n.
    /// - Throws: `.emptyFirstTree` if m == 0 (nothing to prove), `.sizesOutOfOrder` if m > n, `.malformedHash`.
    public static func consistencyProof(
        from m: Int, leafHashes: some RandomAccessCollection<[UInt8]>
    ) throws(MerkleError) -> [[UInt8]] {
        let n = leafHashes.count
        guard m <= n else { throw .sizesOutOfOrder(size1: UInt64(clamping: m), size2: UInt64(n)) }
        guard m > 0 else { throw .emptyFirstTree(size2: UInt64(n)) }
        return try consistencyPath(from: m, size: n) { (lo, hi) throws(MerkleError) in try subtreeRoot(leafHashes, lo, hi) }.map(\.bytes)
    }

    /// PATH(index, D[size]) with the roots of subtrees `lo..<hi` supplied by `subtree`, so that a stored tree answers
    /// from the nodes it keeps instead of from every leaf. Requires 0 <= index < size.
    static func inclusionPath<E: Error>(
        index: Int, size n: Int, subtree: (Int, Int) throws(E) -> MerkleNode
    ) throws(E) -> [MerkleNode] {
        var path = [MerkleNode]()  // top-down; reversed at the end
        var lo = 0, hi = n
        while hi - lo > 1 {
            let k = largestPowerOfTwo(below: hi - lo)
            if index - lo < k {
                path.append(try subtree(lo + k, hi))
                hi = lo + k
            } else {
                path.append(try subtree(lo, lo + k))
                lo += k
            }
        }
        return path.reversed()
    }

    /// PROOF(m, D[size]) with subtree roots from `subtree`. Requires 0 < m <= size.
    static func consistencyPath<E: Error>(
        from m: Int, size n: Int, subtree: (Int, Int) throws(E) -> MerkleNode
    ) throws(E) -> [MerkleNode] {
        // SUBPROOF(m, D[lo..<hi], complete), unrolled; `m` is relative to `lo`.
        var proof = [MerkleNode]()  // top-down; reversed at the end
        var lo = 0, hi = n, m = m, complete = true
        while m < hi - lo {
            let k = largestPowerOfTwo(below: hi - lo)
            if m <= k {
                proof.append(try subtree(lo + k, hi))
                hi = lo + k
            } else {
                proof.append(try subtree(lo, lo + k))
                lo += k
                m -= k
                complete = false
            }
        }
        if !complete { proof.append(try subtree(lo, hi)) }
        return proof.reversed()
    }

    // MARK: Verification (RFC 9162 §2.1.3.2 and §2.1.4.2)

    /// Verifies that `leafHash` is leaf `index` of the tree of `size` leaves whose root is `root`
    /// (RFC 9162 §2.1.3.2).
    /// - Throws: `.indexOutOfRange` (index >= size), `.malformedHash` (a hash not 32 bytes), `.wrongProofLength`,
    ///   `.rootMismatch`.
    public static func verifyInclusion(
        index: UInt64, size: UInt64, leafHash: [UInt8], proof: [[UInt8]], root: [UInt8]
    ) throws(MerkleError) {
        guard index < size else { throw .indexOutOfRange(index: index, size: size) }
        let leaf = try MerkleNode(leafHash, "leaf hash")
        let expectedRoot = try MerkleNode(root, "root")
        let path = try digests(of: proof)
        // Not a step of the RFC, whose loop below rejects the same proofs; it names the fault and hashes nothing.
        let expected = inclusionProofLength(index: index, size: size)
        guard path.count == expected else { throw .wrongProofLength(expected: expected, actual: path.count) }

        var fn = index, sn = size - 1
        var r = leaf
        for p in path {
            guard sn != 0 else { throw .wrongProofLength(expected: expected, actual: path.count) }
            if fn & 1 == 1 || fn == sn {
                r = MerkleNode.parent(p, r)
                while fn & 1 == 0 && fn != 0 { fn >>= 1; sn >>= 1 }
            } else {
                r = MerkleNode.parent(r, p)
            }
            fn >>= 1; sn >>= 1
        }
        guard sn == 0 else { throw .wrongProofLength(expected: expected, actual: path.count) }
        guard r == expectedRoot else { throw .rootMismatch("root") }
    }

    /// Verifies that the tree of `size1` leaves with root `root1` is a prefix of the tree of `size2` leaves with root
    /// `root2` (RFC 9162 §2.1.4.2). Equal sizes need an empty proof and equal roots; size1 == 0 is rejected, since
    /// every tree extends the empty one and such a check proves nothing.
    /// - Throws: `.sizesOutOfOrder` (size1 > size2), `.emptyFirstTree` (size1 == 0), `.malformedHash`,
    ///   `.wrongProofLength`, `.rootMismatch`.
    public static func verifyConsistency(
        size1: UInt64, size2: UInt64, root1: [UInt8], root2: [UInt8], proof: [[UInt8]]
    ) throws(MerkleError) {
        guard size1 <= size2 else { throw .sizesOutOfOrder(size1: size1, size2: size2) }
        guard size1 > 0 else { throw .emptyFirstTree(size2: size2) }
        if size1 == size2 {
            // Same tree: nothing to hash, so the roots are compared as given (the test vectors accept roots of any
            // length here).
            guard proof.isEmpty else { throw .wrongProofLength(expected: 0, actual: proof.count) }
            guard root1 == root2 else { throw .rootMismatch("root2") }
            return
        }
        let first = try MerkleNode(root1, "root1")
        let second = try MerkleNode(root2, "root2")
        let path = try digests(of: proof)
        let expected = consistencyProofLength(size1: size1, size2: size2)
        guard path.count == expected else { throw .wrongProofLength(expected: expected, actual: path.count) }

        // Step 2: when size1 is a power of two, its root is the first node of the path and the proof omits it.
        let firstIsPowerOfTwo = size1 & (size1 - 1) == 0
        let seed = firstIsPowerOfTwo ? first : path[0]
        let rest = path[(firstIsPowerOfTwo ? 0 : 1)...]
        var fn = size1 - 1, sn = size2 - 1
        while fn & 1 == 1 { fn >>= 1; sn >>= 1 }
        var fr = seed, sr = seed
        for c in rest {
            guard sn != 0 else { throw .wrongProofLength(expected: expected, actual: path.count) }
            if fn & 1 == 1 || fn == sn {
                fr = MerkleNode.parent(c, fr)
                sr = MerkleNode.parent(c, sr)
                while fn & 1 == 0 && fn != 0 { fn >>= 1; sn >>= 1 }
            } else {
                sr = MerkleNode.parent(sr, c)
            }
            fn >>= 1; sn >>= 1
        }
        guard sn == 0 else { throw .wrongProofLength(expected: expected, actual: path.count) }
        guard fr == first else { throw .rootMismatch("root1") }
        guard sr == second else { throw .rootMismatch("root2") }
    }

    // MARK: Internals

    /// Number of hashes in the inclusion proof of `index` in a tree of `size` (> index) leaves: one per level below
    /// the point where the leaf's path leaves the right border, plus one per left sibling along the border.
    static func inclusionProofLength(index: UInt64, size: UInt64) -> Int {
        let inner = UInt64.bitWidth - (index ^ (size - 1)).leadingZeroBitCount
        return inner + (index >> inner).nonzeroBitCount
    }

    /// Number of hashes in the consistency proof from `size1` to `size2` leaves, 0 < size1 < size2: the inclusion
    /// proof length of the last leaf of the first tree, counted from the level of the first tree's largest
    /// right-border subtree, plus that subtree's hash unless it is the whole first tree.
    static func consistencyProofLength(size1: UInt64, size2: UInt64) -> Int {
        let shift = size1.trailingZeroBitCount
        let fn = (size1 - 1) >> shift, sn = (size2 - 1) >> shift
        let inner = UInt64.bitWidth - (fn ^ sn).leadingZeroBitCount
        let seed = size1 & (size1 - 1) == 0 ? 0 : 1
        return seed + inner + (fn >> inner).nonzeroBitCount
    }

    /// The largest power of two strictly below `n` (n >= 2): the size of the left subtree of a tree of n leaves.
    static func largestPowerOfTwo(below n: Int) -> Int {
        1 << (Int.bitWidth - 1 - (n - 1).leadingZeroBitCount)
    }

    /// MTH of leaves `lo..<hi` (non-empty) of `leafHashes`: a stack of complete subtrees, merged as they fill, then
    /// folded right to left, which gives RFC 6962's left-heavy shape.
    static func subtreeRoot<C: RandomAccessCollection<[UInt8]>>(
        _ leafHashes: C, _ lo: Int, _ hi: Int
    ) throws(MerkleError) -> MerkleNode {
        var stack = [MerkleNode]()
        stack.reserveCapacity(Int.bitWidth)
        var count = 0
        let start = leafHashes.index(leafHashes.startIndex, offsetBy: lo)
        let end = leafHashes.index(start, offsetBy: hi - lo)
        for bytes in leafHashes[start..<end] {
            guard var node = MerkleNode(bytes) else { throw .malformedHash("leaf hash \(lo + count)", count: bytes.count) }
            count += 1
            var filled = count
            while filled & 1 == 0 {
                node = MerkleNode.parent(stack.removeLast(), node)
                filled >>= 1
            }
            stack.append(node)
        }
        var node = stack.removeLast()
        while let left = stack.popLast() { node = MerkleNode.parent(left, node) }
        return node
    }

    static func digests(of proof: [[UInt8]]) throws(MerkleError) -> [MerkleNode] {
        var out = [MerkleNode]()
        out.reserveCapacity(proof.count)
        for (i, bytes) in proof.enumerated() { out.append(try MerkleNode(bytes, "proof[\(i)]")) }
        return out
    }
}

/// Why a Merkle proof was not generated or did not verify.
public enum MerkleError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A leaf index not below the tree size.
    case indexOutOfRange(index: UInt64, size: UInt64)
    /// A consistency proof asked from a larger tree to a smaller one.
    case sizesOutOfOrder(size1: UInt64, size2: UInt64)
    /// A consistency proof from the empty tree: always true, so never a proof.
    case emptyFirstTree(size2: UInt64)
    /// A hash (named: "root", "proof[2]", …) that is not 32 bytes.
    case malformedHash(String, count: Int)
    /// A proof with too few or too many hashes for the sizes and index claimed.
    case wrongProofLength(expected: Int, actual: Int)
    /// The proof is well formed but leads to a different root (named) than the one given.
    case rootMismatch(String)

    public var description: String {
        switch self {
        case let .indexOutOfRange(index, size): "leaf index \(index) is outside a tree of \(size) leaves"
        case let .sizesOutOfOrder(size1, size2): "size1 \(size1) is larger than size2 \(size2)"
        case let .emptyFirstTree(size2): "a consistency proof from the empty tree to \(size2) leaves proves nothing"
        case let .malformedHash(name, count): "\(name) is \(count) bytes, not \(Merkle.hashCount)"
        case let .wrongProofLength(expected, actual): "the proof has \(actual) hashes where \(expected) are needed"
        case let .rootMismatch(name): "the proof does not lead to \(name)"
        }
    }
}

/// A SHA-256 hash held inline (no heap allocation), for the inner loops of tree hashing and verification.
struct MerkleNode: Equatable, Sendable {
    private var words: (UInt64, UInt64, UInt64, UInt64)

    private init() { words = (0, 0, 0, 0) }

    /// nil unless `bytes` is exactly 32 bytes.
    init?(_ bytes: [UInt8]) {
        guard bytes.count == Merkle.hashCount else { return nil }
        var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        bytes.withUnsafeBytes { src in withUnsafeMutableBytes(of: &words) { $0.copyMemory(from: src) } }
        self.words = words
    }

    /// Throws `.malformedHash(name, …)` unless `bytes` is exactly 32 bytes.
    init(_ bytes: [UInt8], _ name: @autoclosure () -> String) throws(MerkleError) {
        guard let digest = MerkleNode(bytes) else { throw .malformedHash(name(), count: bytes.count) }
        self = digest
    }

    var bytes: [UInt8] {
        withUnsafeBytes(of: words) { Array($0) }
    }

    /// SHA-256(0x01 || left || right), with the 65-byte input on the stack.
    static func parent(_ left: MerkleNode, _ right: MerkleNode) -> MerkleNode {
        var out = MerkleNode()
        withUnsafeTemporaryAllocation(byteCount: 1 + 2 * Merkle.hashCount, alignment: 8) { input in
            input[0] = 0x01
            withUnsafeBytes(of: left.words) { UnsafeMutableRawBufferPointer(rebasing: input[1...32]).copyMemory(from: $0) }
            withUnsafeBytes(of: right.words) { UnsafeMutableRawBufferPointer(rebasing: input[33...64]).copyMemory(from: $0) }
            withUnsafeMutableBytes(of: &out.words) { Hash.sha256(UnsafeRawBufferPointer(input), into: $0) }
        }
        return out
    }

    static func == (a: MerkleNode, b: MerkleNode) -> Bool {
        a.words.0 == b.words.0 && a.words.1 == b.words.1 && a.words.2 == b.words.2 && a.words.3 == b.words.3
    }
}

extension MerkleNode {
    /// The node for 64 lower-case hex digits; nil for anything else.
    init?(hex: UnsafeRawBufferPointer) {
        guard hex.count == 2 * Merkle.hashCount else { return nil }
        self.init()
        var valid = true
        withUnsafeMutableBytes(of: &words) { out in
            for i in 0..<Merkle.hashCount {
                let high = Self.nibble(hex[2 * i]), low = Self.nibble(hex[2 * i + 1])
                valid = valid && high < 16 && low < 16
                out[i] = high << 4 | (low & 0x0f)
            }
        }
        guard valid else { return nil }
    }

    private static func nibble(_ c: UInt8) -> UInt8 {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c &- 48
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c &- 87
        default: 255
        }
    }

    /// The node's 32 bytes, writable (to hash into).
    mutating func withMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) -> R) -> R {
        withUnsafeMutableBytes(of: &words, body)
    }

    /// SHA-256(0x00 || data) for a 32-byte `data`: the leaf hash of an audit entry, whose leaf data is its 32-byte
    /// digest. The 33-byte input lives on the stack.
    static func leaf(of data: MerkleNode) -> MerkleNode {
        var out = MerkleNode()
        withUnsafeTemporaryAllocation(byteCount: 1 + Merkle.hashCount, alignment: 8) { input in
            input[0] = 0x00
            withUnsafeBytes(of: data.words) { UnsafeMutableRawBufferPointer(rebasing: input[1...32]).copyMemory(from: $0) }
            withUnsafeMutableBytes(of: &out.words) { Hash.sha256(UnsafeRawBufferPointer(input), into: $0) }
        }
        return out
    }
}

/// The right edge of a growing tree: the roots of its complete subtrees, largest first. Appending a leaf merges equal
/// subtrees; the root of the tree so far is the stack folded right to left (RFC 6962's left-heavy shape). One pass
/// over the leaves gives the root at every size, in O(log n) memory.
struct CompactRange {
    private(set) var stack: [MerkleNode] = []
    private(set) var size: UInt64 = 0

    init() { stack.reserveCapacity(64) }

    mutating func append(_ leafHash: MerkleNode) {
        append(leafHash) { _, _ in }
    }

    /// Appends a leaf and hands each complete subtree it closes at a level that is a multiple of 8 (the levels the
    /// log stores) to `closed`, with the level: the nodes a verifier compares with the stored ones, at no extra hash.
    mutating func append(_ leafHash: MerkleNode, closed: (_ level: Int, _ node: MerkleNode) -> Void) {
        var node = leafHash
        size += 1
        var filled = size
        var level = 0
        while filled & 1 == 0 {
            node = MerkleNode.parent(stack.removeLast(), node)
            filled >>= 1
            level += 1
            if level & 7 == 0 { closed(level, node) }
        }
        stack.append(node)
    }

    /// MTH of the leaves appended so far; the empty tree's root when none.
    var root: MerkleNode {
        guard var node = stack.last else { return MerkleNode(Merkle.emptyRoot)! }
        for left in stack.dropLast().reversed() { node = MerkleNode.parent(left, node) }
        return node
    }
}
