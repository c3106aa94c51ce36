import Foundation
import GRDB
import SQLiteStorage
import GRDBSQLite
import Storage
import Synchronization
import Vault

extension AuditReader {
    /// Recomputes every entry's digest and link, the Merkle tree, and checks every signed head stored in the log and
    /// every trusted head given.
    ///
    /// On its own the log proves only its internal consistency: whoever can write the file can cut it or rewrite it and
    /// delete (or, with the key, re-sign) the heads after. `trustedHeads`, signed notes kept outside the gateway (a
    /// compliance officer's export, a witness's state), close that gap: the first `size` entries must still hash to
    /// each one's root, so a cut tail, a rewritten entry, deleted heads, a fork or a re-signed log all fail.
    /// - Parameters:
    ///   - publicKey: the audit key the log's own heads must be signed with.
    ///   - trustedHeads: signed notes (C2SP checkpoints); each must carry a valid signature by `trustedVerifier`.
    ///   - trustedVerifier: the key the trusted heads were signed with; by default the audit key under the name the
    ///     note gives.
    ///   - logName: the log's name, when it has one (``HeadSigner/defaultOrigin(for:logName:)``).
    public func verify(
        publicKey: SigningPublicKey, logName: String? = nil, trustedHeads: [String] = [], trustedVerifier: NoteVerifier? = nil
    ) throws -> AuditVerification {
        // Heads are checked under the log's own origin: a head of another log signed with the same key is not one of its.
        let verifier = try trustedVerifier ?? HeadSigner.verifier(for: publicKey, logName: logName)
        var (trusted, failures) = try Self.openTrusted(trustedHeads, verifier: verifier)
        // A changed byte in the file's structure (a page's cells, a record's lengths) makes SQLite refuse to read
        // on: that is a failed verification, named where it shows (by default at the first entry), not an error.
        func readable<T>(
            _ what: String, _ read: () throws -> T, else fallback: @autoclosure () -> T, failingAt position: (T) -> Int64 = { _ in 1 }
        ) throws -> T {
            do { return try read() } catch let error as DatabaseError where error.isDamage {
                let value = fallback()
                failures.append((position(value), "\(what) cannot be read: the file is damaged (SQLite: \(error.message ?? "\(error.resultCode)"))"))
                return value
            }
        }
        let stored = try readable("the signed heads", { try checkpoints() }, else: [])
        let legacy = try readable("the checkpoints", { try legacyCheckpoints() }, else: [])
        // What the rows are, before reading them in order: a rebuilt table can hold sequence numbers that are not
        // integers (between or beyond the real ones), which a range scan would skip. Uncountable, the scan reads in
        // order up to the sequence number the table's right edge still gives, and names the first entry it cannot
        // read; the count's failure is named after the last it could. That sequence number is bounded by the rows the
        // file's pages can hold, so a huge one an editor inserted is a gap, not a scan of 2^62 entries.
        let (count, maxSeq, minSeq, oddSeq) = try readable(
            "the entries",
            {
                try store.pool.read { db -> (Int64, Int64, Int64, Int64?) in
                    let row = try Row.fetchOne(
                        db,
                        sql: """
                            SELECT COUNT(*), MAX(CASE WHEN typeof(seq) = 'integer' THEN seq END), MIN(CASE WHEN typeof(seq) = 'integer' THEN seq END),
                                (SELECT CAST(MIN(seq) AS INTEGER) FROM entries WHERE typeof(seq) <> 'integer') FROM entries
                            """)!
                    return (row[0] as Int64, row[1] as Int64? ?? 0, row[2] as Int64? ?? 1, row[3] as Int64?)
                }
            },
            else: {
                let (last, capacity) =
                    (try? store.pool.read { db in
                        (
                            try Int64.fetchOne(db, sql: "SELECT seq FROM entries ORDER BY seq DESC LIMIT 1") ?? 0,
                            try Int64.fetchOne(db, sql: "SELECT page_count * page_size / 4 FROM pragma_page_count, pragma_page_size") ?? 0
                        )
                    }) ?? (0, 0)
                let bound = max(0, min(last, capacity))
                return (bound, bound, 1, nil)
            }(),
            failingAt: { $0.0 + 1 })
        if let oddSeq {
            failures.append((max(1, oddSeq), "an entry's sequence number is not an integer (the table was rebuilt)"))
        }
        if minSeq < 1 { failures.append((1, "an entry with sequence number \(minSeq) was inserted before the first")) }
        // With a gap the scan stops at it; never past one entry more than there are rows (a huge sequence number
        // is then a gap, not a loop over 2^63 entries).
        let entries = min(maxSeq, count + 1)
        let sizes = Set(stored.map(\.size) + trusted.map(\.size) + legacy.map(\.sequence)).filter { $0 >= 1 && $0 <= entries }
        let scan = try self.scan(entries: entries, sizes: sizes)

        var result = AuditVerification(entries: count, checkpoints: stored.count + legacy.count, trustedHeads: trusted.count)
        if let failure = scan.failure { failures.append(failure) }
        let validThrough = scan.failure.map { $0.0 - 1 } ?? entries

        // Trusted heads, smallest first: a mismatch is located after the last one that still matches.
        let matched = Self.matchTrusted(trusted, scan: scan, entries: entries, count: count, failures: &failures)
        result.trustedThrough = matched

        result.signedThrough = Self.checkHeads(
            stored: stored, legacy: legacy, verifier: verifier, publicKey: publicKey, scan: scan, entries: entries, count: count,
            validThrough: validThrough, failures: &failures)
        // The stored tree: proofs and signed roots are built from it, so a node that disagrees with the entries
        // (forged, or left from before a cut) is a failure even though verification recomputes the tree itself.
        failures += try readable("the stored tree", { try storedNodeFailures(scan: scan, entries: validThrough) }, else: [])
        result.report(failures)
        if !trusted.isEmpty, result.intact, matched > 0 { result.proves = AuditVerification.againstTrusted(matched) }
        return result
    }

    /// The trusted heads that verify under `verifier`, smallest first, and the failures of the log they show: a head
    /// not signed by its key, two heads of one size (a fork). A head that is not a signed checkpoint at all is the
    /// request's fault and throws.
    static func openTrusted(
        _ trustedHeads: [String], verifier: NoteVerifier
    ) throws -> (
        trusted: [(size: Int64, root: MerkleNode)], failures: [(Int64, String)]
    ) {
        var failures: [(Int64, String)] = []
        var trusted: [(size: Int64, root: MerkleNode)] = []
        for (i, note) in trustedHeads.enumerated() {
            let head: Checkpoint
            do {
                head = try Checkpoint(text: SignedNote.open(note, verifiers: [verifier]).text)
            } catch .noVerifiedSignature, .invalidSignature, .ambiguousKey {
                // Well formed, but not signed by the key this log is checked with: the key on the gateway's disk was
                // replaced, or the head is another log's. A failure of the log, not of the request.
                failures.append(
                    (1, "trusted head \(i + 1) is not signed by \(verifier.name)'s key: the log's key was replaced, or the head is another log's"))
                continue
            } catch {
                throw AuditError("trusted head \(i + 1) is not a signed checkpoint: \(error)", invalidInput: true)
            }
            guard let size = Int64(exactly: head.size) else {
                throw AuditError("trusted head \(i + 1) claims \(head.size) entries, more than a log can hold", invalidInput: true)
            }
            trusted.append((size, MerkleNode(head.rootHash)!))
        }
        trusted.sort { $0.size < $1.size }
        for (a, b) in zip(trusted, trusted.dropFirst()) where a.size == b.size && a.root != b.root {
            failures.append((1, "fork: the log's key signed two different heads of size \(a.size)"))
        }
        return (trusted, failures)
    }

    /// How far the entries still match the trusted heads (the size of the largest that matches, 0 for none).
    static func matchTrusted(
        _ trusted: [(size: Int64, root: MerkleNode)], scan: Scan, entries: Int64, count: Int64, failures: inout [(Int64, String)]
    ) -> Int64 {
        var matched: Int64 = 0
        for head in trusted {
            if head.size == 0 {
                if head.root != MerkleNode(Merkle.emptyRoot)! {
                    failures.append((1, "a trusted head of size 0 has a root other than the empty tree's"))
                }
                continue
            }
            if head.size > entries {
                failures.append((entries + 1, "the log is cut: a trusted head covers \(head.size) entries, only \(count) remain"))
                break
            }
            guard scan.roots[head.size] == head.root else {
                failures.append(
                    (
                        matched + 1,
                        "entries 1–\(head.size) no longer hash to the trusted head of size \(head.size): an entry after \(matched) "
                            + "(the last trusted head that still matches) was rewritten, removed, inserted or reordered"
                    ))
                break
            }
            matched = head.size
        }
        return matched
    }

    /// Checks the log's own signed heads (and the checkpoints from before the tree) against the entries; returns how
    /// far they sign the log.
    static func checkHeads(
        stored: [AuditCheckpoint], legacy: [LegacyCheckpoint], verifier: NoteVerifier, publicKey: SigningPublicKey, scan: Scan,
        entries: Int64, count: Int64, validThrough: Int64, failures: inout [(Int64, String)]
    ) -> Int64 {
        var signedThrough: Int64 = 0
        // Heads are read in the order of their key, the size: a size read twice or out of order is an edit (a page's
        // pointer turned to another head's row).
        for (a, b) in zip(stored, stored.dropFirst()) where b.size <= a.size {
            failures.append((max(1, b.size), "the stored head of size \(b.size) is out of place or there twice (the file was edited)"))
        }
        for head in stored {
            let checked: Checkpoint
            do {
                checked = try Checkpoint(text: SignedNote.open(head.note, verifiers: [verifier]).text)
            } catch {
                failures.append((head.size, "the stored head of size \(head.size) has no valid signature by \(verifier.name)'s key: \(error)"))
                continue
            }
            if Int64(exactly: checked.size) != head.size || Data(checked.rootHash).base64EncodedString() != head.rootHash {
                failures.append((head.size, "the stored head of size \(head.size) does not say what its signed note says"))
            } else if !HeadSigner.states(checked, signedAt: head.at) {
                failures.append((head.size, "the stored time of the head of size \(head.size) is not the time its signed note states"))
            } else if head.size > entries {
                failures.append((entries + 1, "the log is cut: a signed head covers \(head.size) entries, only \(count) remain"))
            } else if head.size <= validThrough, scan.roots[head.size] != MerkleNode(checked.rootHash) {
                failures.append((head.size, "the signed head of size \(head.size) does not match the entries"))
            } else if head.size <= validThrough {
                signedThrough = max(signedThrough, head.size)
            }
        }
        for cp in legacy {
            guard let signature = [UInt8](hexString: cp.signature), publicKey.isValidSignature(signature, for: cp.message) else {
                failures.append((cp.sequence, "checkpoint at \(cp.sequence) has an invalid signature"))
                continue
            }
            if cp.sequence > entries {
                failures.append((entries + 1, "the log is cut: a signed checkpoint covers \(cp.sequence) entries, only \(count) remain"))
            } else if cp.sequence <= validThrough, scan.chain[cp.sequence] != cp.headHash {
                failures.append((cp.sequence, "checkpoint at \(cp.sequence) does not match the entry there"))
            } else if cp.sequence <= validThrough {
                signedThrough = max(signedThrough, cp.sequence)
            }
        }
        return signedThrough
    }

    /// Every stored node checked against the nodes the scan recomputed from the entries; nodes beyond the entries
    /// that remain mean the log was cut. The log stores every node it closes, so one missing (or read twice) is an
    /// edit too: a range read of the stored nodes would hand a proof its neighbour's.
    private func storedNodeFailures(scan: Scan, entries: Int64) throws -> [(Int64, String)] {
        var failures: [(Int64, String)] = []
        var seen = Set<NodeKey>()
        try store.pool.read { db in
            // A live log grows while it is verified: nodes its new entries closed since the scan are not a cut.
            let now = try Int64.fetchOne(db, sql: "SELECT CAST(MAX(seq) AS INTEGER) FROM entries") ?? 0
            let rows = try Row.fetchCursor(db, sql: "SELECT level, idx, hash FROM tree_nodes ORDER BY level, idx")
            while let row = try rows.next() {
                // Read without trapping on an edited row's types.
                guard let level = Int.fromDatabaseValue(row[0]), let index = Int64.fromDatabaseValue(row[1]),
                    let bytes = Data.fromDatabaseValue(row[2]), level > 0, level < 63, level % AuditTree.stride == 0, index >= 0,
                    index < (Int64.max >> level) - 1
                else {
                    failures.append((1, "the stored tree holds a node at a position, or of a type, Veil never writes"))
                    continue
                }
                let first = index << level + 1, last = (index + 1) << level
                if !seen.insert(NodeKey(level: level, index: index)).inserted {
                    failures.append((first, "the stored tree holds the node for entries \(first)–\(last) twice"))
                } else if last > entries, last <= now {
                    continue  // its entries are there: appended after the scan, or after a failure already named
                } else if last > entries {
                    failures.append(
                        (
                            entries + 1,
                            "the stored tree has a node for entries \(first)–\(last), beyond the \(entries) entries that verify (the log was cut)"
                        ))
                } else if let expected = scan.nodes[NodeKey(level: level, index: index)], expected.bytes != [UInt8](bytes) {
                    failures.append(
                        (first, "the stored tree node for entries \(first)–\(last) does not match them: proofs served from it would fail"))
                }
            }
        }
        for key in scan.nodes.keys where !seen.contains(key) && (key.index + 1) << key.level <= entries {
            failures.append(
                (
                    key.index << key.level + 1,
                    "the stored tree lacks the node for entries \(key.index << key.level + 1)–\((key.index + 1) << key.level)"
                ))
        }
        return failures
    }

    // MARK: The scan

    /// Entries are scanned in aligned chunks of this many (2^16), two at a time: each chunk's subtree is complete and
    /// independent, so the chunks' roots combine into the tree's.
    static let chunkBits = 16

    struct Scan {
        /// Root of the first `size` entries, for each size asked for (up to the first failure).
        var roots: [Int64: MerkleNode] = [:]
        /// The entry digest (hex) at each size asked for: what the first design's checkpoints signed.
        var chain: [Int64: String] = [:]
        /// The complete subtrees at the stored levels (every 8th), as the entries make them.
        var nodes: [NodeKey: MerkleNode] = [:]
        var failure: (Int64, String)?
    }

    struct NodeKey: Hashable {
        var level: Int
        var index: Int64
    }

    private struct Chunk {
        var leaves = 0
        var root: MerkleNode?
        /// For each size of interest inside the chunk: the chunk's right edge after that entry.
        var edges: [(size: Int64, nodes: [MerkleNode])] = []
        var chain: [Int64: String] = [:]
        var nodes: [(NodeKey, MerkleNode)] = []
        var firstPrevious: [UInt8] = []
        var lastDigest: [UInt8] = []
        var failure: (Int64, String)?
    }

    /// One pass over entries 1…`entries` on two threads: each entry's digest against its content and its link,
    /// and the tree's root at each of `sizes`.
    func scan(entries: Int64, sizes: Set<Int64>) throws -> Scan {
        let chunkSize = Int64(1) << Self.chunkBits
        let chunkCount = Int((entries + chunkSize - 1) / chunkSize)
        let sorted = sizes.sorted()
        let results = Mutex<[Int: Chunk]>([:])
        let next = Atomic<Int>(0)
        // The first chunk that failed: nothing after it is read (the result stops there).
        let failed = Atomic<Int>(.max)
        let workers = min(2, max(1, chunkCount))
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while true {
                let c = next.add(1, ordering: .relaxed).oldValue
                if c >= chunkCount || c > failed.load(ordering: .relaxed) { return }
                let lo = Int64(c) * chunkSize, hi = min(lo + chunkSize, entries)
                var chunk: Chunk
                var scanned: Chunk?
                do {
                    chunk = try store.pool.read { db in
                        scanned = try Self.scanChunk(lo: lo, hi: hi, sizes: sorted.filter { $0 > lo && $0 <= hi }, in: db)
                        return scanned!
                    }
                } catch {
                    // Ending the read can fail on a damaged page after the scan already named the entry it stopped at.
                    if let scanned, scanned.failure != nil {
                        chunk = scanned
                    } else {
                        chunk = Chunk(failure: (lo + 1, "the log cannot be read in entries \(lo + 1)–\(hi): \(error)"))
                    }
                }
                if chunk.failure != nil { failed.min(c, ordering: .relaxed) }
                results.withLock { $0[c] = chunk }
            }
        }
        let chunks = results.withLock { $0 }
        var scan = Scan()
        var edge = CompactRange()  // over the chunks' roots: level 16 and up
        for c in 0..<chunkCount {
            let chunk = chunks[c]!
            // Earlier chunks ended without a failure (the loop returns at one), so their last digest is known.
            if c > 0, !chunk.firstPrevious.isEmpty, chunk.firstPrevious != chunks[c - 1]!.lastDigest {
                scan.failure = (Int64(c) * chunkSize + 1, "link to the previous entry is broken")
                return scan
            }
            for (size, nodes) in chunk.edges {
                var node = nodes.last!
                for left in (edge.stack + nodes.dropLast()).reversed() { node = MerkleNode.parent(left, node) }
                scan.roots[size] = node
            }
            scan.chain.merge(chunk.chain) { a, _ in a }
            for (key, node) in chunk.nodes { scan.nodes[key] = node }
            if let failure = chunk.failure {
                scan.failure = failure
                return scan
            }
            if let root = chunk.root {
                scan.nodes[NodeKey(level: Self.chunkBits, index: Int64(c))] = root
                let chunks = Int64(edge.size) + 1  // after this one
                edge.append(root) { level, node in
                    scan.nodes[NodeKey(level: Self.chunkBits + level, index: chunks >> level - 1)] = node
                }
            }
        }
        return scan
    }

    /// Scans entries `lo+1 … hi` of one chunk with SQLite's C API: no row objects, no strings, no allocation per row.
    private static func scanChunk(lo: Int64, hi: Int64, sizes: [Int64], in db: Database) throws -> Chunk {
        var chunk = Chunk()
        let statement = try db.makeStatement(sql: "SELECT \(columns) FROM entries WHERE seq > ? AND seq <= ? ORDER BY seq")
        let s = statement.sqliteStatement
        sqlite3_bind_int64(s, 1, lo)
        sqlite3_bind_int64(s, 2, hi)
        var edge = CompactRange()
        var encoder = EntryEncoder()
        defer { encoder.deallocate() }
        // The previous entry's digest as stored (64 hex digits), for its successor's link.
        var previous = [UInt8](repeating: 0, count: 64)
        var nextSize = sizes.startIndex
        var expected = lo + 1
        func text(_ column: Int32) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(start: sqlite3_column_text(s, column), count: Int(sqlite3_column_bytes(s, column)))
        }
        while true {
            let code = sqlite3_step(s)
            if code == SQLITE_DONE { break }
            guard code == SQLITE_ROW else {
                let error = DatabaseError(resultCode: ResultCode(rawValue: code), message: db.lastErrorMessage)
                guard error.isDamage else { throw error }
                chunk.failure = (expected, "entry \(expected) cannot be read: the file is damaged (SQLite: \(error.message ?? "\(code)"))")
                return chunk
            }
            let seq = sqlite3_column_int64(s, 0)
            // Named where the wrong row stands: a smaller number found here (only a damaged page reads rows out of
            // order) is an entry missing at this place, not a fault of the entry that number belongs to.
            guard seq == expected else {
                chunk.failure = (expected, "expected entry \(expected), found \(seq) (entry removed, inserted or reordered)")
                return chunk
            }
            guard Self.fieldsAsWritten(s) else {
                chunk.failure = (seq, "entry \(seq) holds a field of a type or value Veil never writes (the table was edited)")
                return chunk
            }
            // The canonical encoding of AuditEntry.computeHash: the integers as their decimal text (SQLite renders an
            // INTEGER column so), absent token and purpose as "-".
            encoder.reset()
            for column in Int32(0)...5 { encoder.put(text(column)) }
            for column in Int32(6)...7 {
                if sqlite3_column_type(s, column) == SQLITE_NULL { encoder.putDash() } else { encoder.put(text(column)) }
            }
            for column in Int32(8)...11 { encoder.put(text(column)) }
            let previousText = text(11), hashText = text(12)
            if seq == lo + 1 {
                chunk.firstPrevious = Array(previousText)
                if seq == 1, !previousText.elementsEqual(AuditLog.genesisHash.utf8) {
                    chunk.failure = (seq, "link to the previous entry is broken")
                    return chunk
                }
            } else if previousText.count != 64 || memcmp(previousText.baseAddress!, previous, 64) != 0 {
                chunk.failure = (seq, "link to the previous entry is broken")
                return chunk
            }
            guard hashText.count == 64, let stored = MerkleNode(hex: hashText), stored == encoder.digest() else {
                chunk.failure = (seq, "entry content does not match its hash")
                return chunk
            }
            previous.withUnsafeMutableBytes { $0.copyMemory(from: hashText) }
            let leaves = seq  // after this one
            edge.append(MerkleNode.leaf(of: stored)) { level, node in
                chunk.nodes.append((NodeKey(level: level, index: leaves >> level - 1), node))
            }
            chunk.leaves += 1
            if nextSize < sizes.endIndex, sizes[nextSize] == seq {
                chunk.edges.append((seq, edge.stack))
                chunk.chain[seq] = String(decoding: hashText, as: UTF8.self)
                nextSize += 1
            }
            expected += 1
        }
        guard expected == hi + 1 else {
            chunk.failure = (expected, "expected entry \(expected), found none (entry removed)")
            return chunk
        }
        chunk.lastDigest = previous
        if chunk.leaves == 1 << chunkBits { chunk.root = edge.root }
        return chunk
    }
}

extension AuditReader {
    /// The types the writer gives each column: text, the time an integer, token and purpose text or NULL. The hash
    /// encodes an absent token or purpose as "-", which no token (hex) or purpose (a policy name) can be, so a "-"
    /// stored there is an edit that the hash alone would not show.
    fileprivate static func fieldsAsWritten(_ s: OpaquePointer?) -> Bool {
        guard sqlite3_column_type(s, 1) == SQLITE_INTEGER else { return false }
        for column: Int32 in [2, 3, 4, 5, 8, 9, 10, 11, 12] where sqlite3_column_type(s, column) != SQLITE_TEXT { return false }
        for column: Int32 in [6, 7] {
            switch sqlite3_column_type(s, column) {
            case SQLITE_NULL: continue
            case SQLITE_TEXT:
                if sqlite3_column_bytes(s, column) == 1, sqlite3_column_text(s, column)[0] == UInt8(ascii: "-") { return false }
            default: return false
            }
        }
        return true
    }
}

/// The canonical, length-prefixed encoding of an entry (``AuditEntry/computeHash``) built in one reused buffer.
private struct EntryEncoder {
    private var buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
    private var count = 0
    private static let prefix = Array("veil.audit.v1".utf8)

    mutating func reset() {
        count = 0
        put(raw: Self.prefix.withUnsafeBytes { $0 })
    }

    private mutating func reserve(_ n: Int) {
        guard count + n > buffer.count else { return }
        let grown = UnsafeMutableRawBufferPointer.allocate(byteCount: max(buffer.count * 2, count + n), alignment: 8)
        grown.copyMemory(from: UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        buffer.deallocate()
        buffer = grown
    }

    private mutating func put(raw bytes: UnsafeRawBufferPointer) {
        reserve(bytes.count)
        if bytes.count > 0 { UnsafeMutableRawBufferPointer(rebasing: buffer[count...]).copyMemory(from: bytes) }
        count += bytes.count
    }

    /// 4 big-endian length bytes, then the bytes.
    mutating func put(_ bytes: UnsafeRawBufferPointer) {
        reserve(4 + bytes.count)
        let n = UInt32(truncatingIfNeeded: bytes.count).bigEndian
        withUnsafeBytes(of: n) { put(raw: $0) }
        put(raw: bytes)
    }

    mutating func putDash() {
        withUnsafeBytes(of: (UInt32(1).bigEndian, UInt8(ascii: "-"))) { put(raw: UnsafeRawBufferPointer(rebasing: $0[0..<5])) }
    }

    /// BLAKE2b-256 of the encoding.
    func digest() -> MerkleNode {
        var out = MerkleNode(Merkle.emptyRoot)!
        out.withMutableBytes { Hash.blake2b256(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), into: $0) }
        return out
    }

    func deallocate() { buffer.deallocate() }
}

extension DatabaseError {
    /// SQLite's verdict that the file's structure is broken: a changed byte in a page or a record's header, not a
    /// changed value (which reads fine and fails its digest). A value too big to read is one whose stored length was
    /// changed: nothing Veil writes comes near SQLite's limit.
    var isDamage: Bool { [.SQLITE_CORRUPT, .SQLITE_NOTADB, .SQLITE_TOOBIG].contains(resultCode) }
}
