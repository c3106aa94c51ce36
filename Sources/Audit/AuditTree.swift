import Foundation
import GRDB
import Vault

/// The log's RFC 6962 Merkle tree, kept beside the entries in the same database.
///
/// Leaf `i` is entry `i + 1`; its leaf data is the entry's 32-byte digest (`hash`, which covers every field and the
/// previous entry's digest), so the leaf hash is SHA-256(0x00 || digest). Only the roots of complete subtrees at every
/// eighth level (256, 65,536, … leaves) are stored: an append adds one node per 256 entries, and any other subtree
/// root is at most 256 stored hashes away. The stored nodes are derived data: proofs are built from them, and a
/// verifier checks every proof against a signed head, so a forged node yields a proof that fails, never a false pass.
enum AuditTree {
    /// Levels stored: multiples of this.
    static let stride = 8

    /// Adds the stored nodes completed by the entries after `before` up to `after` (both entry counts). Runs inside
    /// the append's transaction, after the entries are inserted.
    static func extend(from before: Int64, to after: Int64, in db: Database) throws {
        var level = stride
        while level < 63 {
            let first = before >> level, end = after >> level
            if first >= end { return }
            for index in first..<end {
                let node = try computeBlock(level: level, index: index, in: db)
                try store(node, level: level, index: index, in: db)
            }
            level += stride
        }
    }

    /// The root of the first `size` leaves.
    static func root(size: Int64, in db: Database) throws -> MerkleNode {
        if size == 0 { return MerkleNode(Merkle.emptyRoot)! }
        return try range(0, size, in: db)
    }

    /// Audit path of leaf `index` in the tree of `size` leaves (0 <= index < size).
    static func inclusionProof(index: Int64, size: Int64, in db: Database) throws -> [[UInt8]] {
        try Merkle.inclusionPath(index: Int(index), size: Int(size)) { lo, hi in try range(Int64(lo), Int64(hi), in: db) }.map(\.bytes)
    }

    /// Consistency proof from `from` to `size` leaves (0 < from <= size).
    static func consistencyProof(from: Int64, size: Int64, in db: Database) throws -> [[UInt8]] {
        try Merkle.consistencyPath(from: Int(from), size: Int(size)) { lo, hi in try range(Int64(lo), Int64(hi), in: db) }.map(\.bytes)
    }

    /// MTH of leaves `lo..<hi`, where `lo` is a multiple of a power of two at least `hi - lo` (every range the RFC's
    /// proofs ask for): the complete subtrees of the binary digits of the width, folded right to left.
    static func range(_ lo: Int64, _ hi: Int64, in db: Database) throws -> MerkleNode {
        var blocks: [MerkleNode] = []
        var at = lo
        while at < hi {
            let widthBits = 63 - (hi - at).leadingZeroBitCount
            let alignBits = at == 0 ? 62 : at.trailingZeroBitCount
            let level = min(widthBits, alignBits)
            blocks.append(try block(level: level, index: at >> level, in: db))
            at += Int64(1) << level
        }
        var node = blocks.removeLast()
        while let left = blocks.popLast() { node = MerkleNode.parent(left, node) }
        return node
    }

    /// The root of complete subtree `index` at `level` (its leaves are `index << level ..< (index + 1) << level`).
    static func block(level: Int, index: Int64, in db: Database) throws -> MerkleNode {
        if level == 0 { return try leaves(from: index, count: 1, in: db)[0] }
        if level % stride == 0, let stored = try storedNodes(level: level, from: index, count: 1, in: db).first { return stored }
        return try computeBlock(level: level, index: index, in: db)
    }

    /// Computes a complete subtree's root from the nearest stored level below it.
    private static func computeBlock(level: Int, index: Int64, in db: Database) throws -> MerkleNode {
        let base = level % stride == 0 ? level - stride : level - level % stride
        let count = Int64(1) << (level - base)
        var nodes =
            base == 0
            ? try leaves(from: index * count, count: Int(count), in: db)
            : try storedNodes(level: base, from: index * count, count: Int(count), in: db)
        if nodes.count != Int(count) {
            // A level below that is not stored yet (a log built before the tree): one level further down.
            nodes = try (0..<count).map { try block(level: base, index: index * count + $0, in: db) }
        }
        while nodes.count > 1 {
            nodes = Swift.stride(from: 0, to: nodes.count, by: 2).map { MerkleNode.parent(nodes[$0], nodes[$0 + 1]) }
        }
        return nodes[0]
    }

    /// Leaf hashes of leaves `first ..< first + count` (entries `first + 1 …`).
    static func leaves(from first: Int64, count: Int, in db: Database) throws -> [MerkleNode] {
        let statement = try db.cachedStatement(sql: "SELECT seq, hash FROM entries WHERE seq > ? AND seq <= ? ORDER BY seq")
        var out: [MerkleNode] = []
        out.reserveCapacity(count)
        var expected = first + 1
        let rows = try Row.fetchCursor(statement, arguments: [first, first + Int64(count)])
        while let row = try rows.next() {
            let seq: Int64 = row[0]
            guard seq == expected, let digest = try digest(row[1]) else {
                throw AuditError("the audit log's entry \(expected) is missing or malformed; run `veil audit verify`")
            }
            out.append(MerkleNode.leaf(of: digest))
            expected += 1
        }
        guard out.count == count else { throw AuditError("the audit log has no entry \(expected); run `veil audit verify`") }
        return out
    }

    /// 64 hex digits as a node; nil for anything else.
    static func digest(_ hex: String) throws -> MerkleNode? {
        var hex = hex
        return hex.withUTF8 { MerkleNode(hex: UnsafeRawBufferPointer($0)) }
    }

    private static func storedNodes(level: Int, from first: Int64, count: Int, in db: Database) throws -> [MerkleNode] {
        let statement = try db.cachedStatement(sql: "SELECT hash FROM tree_nodes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx")
        return try Data.fetchAll(statement, arguments: [level, first, first + Int64(count)]).compactMap { MerkleNode([UInt8]($0)) }
    }

    private static func store(_ node: MerkleNode, level: Int, index: Int64, in db: Database) throws {
        // A node already there is replaced: it can only be one left from before the log was cut (or forged), and the
        // one computed now, from the entries, is what a root signed from it must rest on.
        try db.cachedStatement(
            sql: "INSERT INTO tree_nodes (level, idx, hash) VALUES (?, ?, ?) ON CONFLICT (level, idx) DO UPDATE SET hash = excluded.hash"
        )
        .execute(arguments: [level, index, Data(node.bytes)])
    }
}
