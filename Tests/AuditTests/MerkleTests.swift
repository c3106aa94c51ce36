import Foundation
import Testing
import Vault
@testable import Audit

/// RFC 6962 / RFC 9162 Merkle primitives: the transparency-dev/merkle vectors in ../shared, then generated trees.
@Suite struct MerkleTests {
    /// ../shared/vectors/merkle beside the repository (CI always has it; a missing copy fails, never skips).
    static let vectorDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()  // the repository
        .deletingLastPathComponent().appendingPathComponent("shared/vectors/merkle").standardizedFileURL

    struct InclusionVector: Vector {
        let leafIdx: UInt64, treeSize: UInt64, root: Data, leafHash: Data, proof: [Data]?, desc: String, wantErr: Bool
    }

    struct ConsistencyVector: Vector {
        let size1: UInt64, size2: UInt64, root1: Data, root2: Data, proof: [Data]?, desc: String, wantErr: Bool
    }

    /// Every *.json under `kind` (inclusion or consistency), decoded; base64 fields arrive as Data.
    static func vectors<V: Decodable>(_ kind: String, as type: V.Type) throws -> [(path: String, vector: V)] {
        let dir = vectorDirectory.appendingPathComponent(kind)
        var isDirectory: ObjCBool = false
        try #require(
            FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDirectory) && isDirectory.boolValue,
            "\(dir.path) is missing: tests need ../shared/vectors/merkle beside the repository")
        let files = try #require(FileManager.default.enumerator(at: dir, includingPropertiesForKeys: nil))
            .compactMap { $0 as? URL }.filter { $0.pathExtension == "json" }.sorted { $0.path < $1.path }
        return try files.map { url in
            do {
                return (url.path, try JSONDecoder().decode(V.self, from: Data(contentsOf: url)))
            } catch {
                Issue.record("\(url.path): \(error)")
                throw error
            }
        }
    }

    // MARK: Vectors

    protocol Vector: Decodable { var wantErr: Bool { get }; var desc: String { get } }

    /// Runs `verify` on every vector of `kind`: it must accept exactly those without `wantErr`.
    static func expectVerifierMatches<V: Vector>(_ kind: String, _ type: V.Type, verify: (V) throws(MerkleError) -> Void) throws {
        let vectors = try Self.vectors(kind, as: V.self)
        var accepted = 0, wrong = [String]()
        for (path, v) in vectors {
            let outcome: MerkleError?
            do throws(MerkleError) {
                try verify(v)
                outcome = nil
                accepted += 1
            } catch {
                outcome = error
            }
            if (outcome != nil) != v.wantErr {
                wrong.append("\(path) (\(v.desc)): wantErr \(v.wantErr), got \(outcome.map(String.init(describing:)) ?? "accepted")")
            }
        }
        print("Merkle \(kind) vectors: \(vectors.count), accepted \(accepted), rejected \(vectors.count - accepted)")
        #expect(wrong.isEmpty, "\(wrong.joined(separator: "\n"))")
        #expect(vectors.count > 75)
        #expect(accepted == vectors.filter { !$0.vector.wantErr }.count)
    }

    @Test func inclusionVectors() throws {
        try Self.expectVerifierMatches("inclusion", InclusionVector.self) { (v) throws(MerkleError) in
            try Merkle.verifyInclusion(
                index: v.leafIdx, size: v.treeSize, leafHash: [UInt8](v.leafHash),
                proof: (v.proof ?? []).map { [UInt8]($0) }, root: [UInt8](v.root))
        }
    }

    @Test func consistencyVectors() throws {
        try Self.expectVerifierMatches("consistency", ConsistencyVector.self) { (v) throws(MerkleError) in
            try Merkle.verifyConsistency(
                size1: v.size1, size2: v.size2, root1: [UInt8](v.root1), root2: [UInt8](v.root2),
                proof: (v.proof ?? []).map { [UInt8]($0) })
        }
    }

    /// The vectors' tree is the RFC 6962 reference tree of these eight leaves: the generator must reproduce its roots
    /// and, byte for byte, the proofs of every happy-path vector.
    @Test func generatorReproducesTheHappyPathVectors() throws {
        let leaves = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
            .map { Merkle.leafHash([UInt8](hexString: $0)!) }
        // single-entry/ and additional/ are hand-made cases over other hashes.
        func fromReferenceTree(_ path: String) -> Bool { !path.contains("/single-entry/") && !path.contains("/additional/") }
        var checked = 0
        for (path, v) in try Self.vectors("inclusion", as: InclusionVector.self) where !v.wantErr && fromReferenceTree(path) {
            try #require(v.treeSize <= leaves.count, "\(path)")
            let tree = leaves[0..<Int(v.treeSize)]
            #expect(try Merkle.root(of: tree) == [UInt8](v.root), "\(path)")
            #expect(leaves[Int(v.leafIdx)] == [UInt8](v.leafHash), "\(path)")
            #expect(try Merkle.inclusionProof(index: Int(v.leafIdx), leafHashes: tree) == (v.proof ?? []).map { [UInt8]($0) }, "\(path)")
            checked += 1
        }
        for (path, v) in try Self.vectors("consistency", as: ConsistencyVector.self)
        where !v.wantErr && fromReferenceTree(path) {
            try #require(v.size2 <= leaves.count, "\(path)")
            #expect(try Merkle.root(of: leaves[0..<Int(v.size1)]) == [UInt8](v.root1), "\(path)")
            #expect(try Merkle.root(of: leaves[0..<Int(v.size2)]) == [UInt8](v.root2), "\(path)")
            let proof = try Merkle.consistencyProof(from: Int(v.size1), leafHashes: leaves[0..<Int(v.size2)])
            #expect(proof == (v.proof ?? []).map { [UInt8]($0) }, "\(path)")
            checked += 1
        }
        print("Merkle happy-path vectors reproduced by the generator: \(checked)")
        #expect(checked == 10)
    }

    // MARK: Hashes

    @Test func hashesFollowRFC6962() {
        #expect(Merkle.emptyRoot.hexString == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Merkle.leafHash([]) == Hash.sha256([0]))
        let l = Merkle.leafHash([1]), r = Merkle.leafHash([2])
        #expect(Merkle.nodeHash(l, r) == Hash.sha256([1] + l + r))
        #expect(Merkle.nodeHash([7], [8, 9]) == Hash.sha256([1, 7, 8, 9]))
        #expect((try? Merkle.root(of: [[UInt8]]())) == Merkle.emptyRoot)
        #expect((try? Merkle.root(of: [l])) == l)
        #expect(throws: MerkleError.malformedHash("leaf hash 1", count: 3)) { try Merkle.root(of: [l, [1, 2, 3]]) }
    }

    // MARK: Properties of generated trees

    static func leaves(_ n: Int) -> [[UInt8]] {
        (0..<n).map { i in Merkle.leafHash(withUnsafeBytes(of: UInt32(i).bigEndian) { Array($0) } + Array("entry".utf8)) }
    }

    /// MTH straight from RFC 6962 §2.1, recursive, with the byte-array hashes.
    static func naiveRoot(_ hashes: ArraySlice<[UInt8]>) -> [UInt8] {
        if hashes.isEmpty { return Hash.sha256([]) }
        if hashes.count == 1 { return hashes.first! }
        var k = 1
        while k * 2 < hashes.count { k *= 2 }
        let mid = hashes.startIndex + k
        return Merkle.nodeHash(naiveRoot(hashes[..<mid]), naiveRoot(hashes[mid...]))
    }

    static func flipped(_ proof: [[UInt8]], at i: Int) -> [[UInt8]] {
        var proof = proof
        proof[i][(i * 7) % 32] ^= 1 << UInt8(i % 8)
        return proof
    }

    static let sizes = Array(1...64) + [100, 257, 1000]

    @Test func rootsMatchTheRecursiveDefinition() throws {
        let all = Self.leaves(1000)
        #expect(Self.naiveRoot([]) == Merkle.emptyRoot)
        for n in [0] + Self.sizes {
            #expect(try Merkle.root(of: all[0..<n]) == Self.naiveRoot(all[0..<n]), "n = \(n)")
        }
    }

    @Test func everyInclusionProofVerifiesAndNoTamperedOneDoes() throws {
        let all = Self.leaves(1000)
        let roots = try (0...1000).map { n in try Merkle.root(of: all[0..<n]) }
        for n in Self.sizes {
            let tree = all[0..<n], root = roots[n], size = UInt64(n)
            for i in 0..<n {
                let proof = try Merkle.inclusionProof(index: i, leafHashes: tree)
                #expect(proof.count == Merkle.inclusionProofLength(index: UInt64(i), size: size))
                try Merkle.verifyInclusion(index: UInt64(i), size: size, leafHash: tree[i], proof: proof, root: root)
                guard n <= 64 else { continue }
                func rejects(_ index: Int, _ size: Int, _ leaf: [UInt8], _ proof: [[UInt8]], _ root: [UInt8]) -> Bool {
                    (try? Merkle.verifyInclusion(index: UInt64(index), size: UInt64(size), leafHash: leaf, proof: proof, root: root)) == nil
                }
                for k in proof.indices { #expect(rejects(i, n, tree[i], Self.flipped(proof, at: k), root), "n \(n) i \(i) bit in \(k)") }
                for j in 0..<n where j != i { #expect(rejects(j, n, tree[i], proof, root), "n \(n) i \(i) as index \(j)") }
                #expect(rejects(i, n, tree[(i + 1) % n], proof, root) || n == 1)
                #expect(rejects(i, n, tree[i], proof, Self.flipped([root], at: 0)[0]))
                // A wrong size with the root of that size (what a tree head for it would carry).
                for m in [i + 1, n - 1, n + 1, n * 2] where m > i && m != n {
                    #expect(rejects(i, m, tree[i], proof, roots[m]), "n \(n) i \(i) as size \(m)")
                }
                #expect(rejects(i, n, tree[i], proof + [root], root))
                #expect(rejects(i, n, tree[i], [root] + proof, root))
                if !proof.isEmpty { #expect(rejects(i, n, tree[i], Array(proof.dropLast()), root)) }
            }
            #expect(throws: MerkleError.indexOutOfRange(index: size, size: size)) {
                try Merkle.verifyInclusion(index: size, size: size, leafHash: tree[0], proof: [], root: root)
            }
            #expect(throws: MerkleError.indexOutOfRange(index: size, size: size)) { try Merkle.inclusionProof(index: n, leafHashes: tree) }
        }
    }

    @Test func everyConsistencyProofVerifiesAndNoTamperedOneDoes() throws {
        let all = Self.leaves(1000)
        let roots = try (0...1000).map { n in try Merkle.root(of: all[0..<n]) }
        func rejects(_ m: Int, _ n: Int, _ proof: [[UInt8]], root1: [UInt8]? = nil, root2: [UInt8]? = nil) -> Bool {
            (try? Merkle.verifyConsistency(size1: UInt64(m), size2: UInt64(n), root1: root1 ?? roots[m], root2: root2 ?? roots[n], proof: proof))
                == nil
        }
        var pairs = 0
        for n in 1...64 {
            for m in 1...n {
                let proof = try Merkle.consistencyProof(from: m, leafHashes: all[0..<n])
                try Merkle.verifyConsistency(size1: UInt64(m), size2: UInt64(n), root1: roots[m], root2: roots[n], proof: proof)
                pairs += 1
                if m == n { #expect(proof.isEmpty); #expect(rejects(m, n, [roots[m]])); continue }
                #expect(proof.count == Merkle.consistencyProofLength(size1: UInt64(m), size2: UInt64(n)))
                for k in proof.indices { #expect(rejects(m, n, Self.flipped(proof, at: k)), "\(m)->\(n) bit in \(k)") }
                #expect(rejects(m, n, proof, root1: Self.flipped([roots[m]], at: 0)[0]))
                #expect(rejects(m, n, proof, root2: Self.flipped([roots[n]], at: 0)[0]))
                #expect(rejects(m, n, proof, root1: roots[n], root2: roots[m]))
                for m2 in [m - 1, m + 1] where m2 >= 1 && m2 <= n && m2 != m { #expect(rejects(m2, n, proof), "\(m)->\(n) as \(m2)") }
                for n2 in [n - 1, n + 1] where n2 >= m && n2 != n { #expect(rejects(m, n2, proof), "\(m)->\(n) as ->\(n2)") }
                #expect(rejects(m, n, Array(proof.dropLast())))
                #expect(rejects(m, n, proof + [roots[n]]))
                #expect(rejects(m, n, [roots[m]] + proof))
                #expect(rejects(0, n, proof, root1: Merkle.emptyRoot))
                #expect(rejects(n, m, proof, root1: roots[n], root2: roots[m]))
            }
        }
        #expect(pairs == 64 * 65 / 2)
        for (m, n) in [(1, 1000), (257, 1000), (511, 1000), (512, 1000), (999, 1000), (100, 257)] {
            let proof = try Merkle.consistencyProof(from: m, leafHashes: all[0..<n])
            try Merkle.verifyConsistency(size1: UInt64(m), size2: UInt64(n), root1: roots[m], root2: roots[n], proof: proof)
        }
        #expect(throws: MerkleError.emptyFirstTree(size2: 3)) { try Merkle.consistencyProof(from: 0, leafHashes: all[0..<3]) }
        #expect(throws: MerkleError.sizesOutOfOrder(size1: 4, size2: 3)) { try Merkle.consistencyProof(from: 4, leafHashes: all[0..<3]) }
        #expect(throws: MerkleError.emptyFirstTree(size2: 0)) {
            try Merkle.verifyConsistency(size1: 0, size2: 0, root1: Merkle.emptyRoot, root2: Merkle.emptyRoot, proof: [])
        }
        #expect(throws: MerkleError.malformedHash("proof[0]", count: 31)) {
            try Merkle.verifyConsistency(size1: 1, size2: 2, root1: roots[1], root2: roots[2], proof: [[UInt8](repeating: 0, count: 31)])
        }
    }
}
