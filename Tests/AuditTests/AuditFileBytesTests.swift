import Foundation
import GRDB
import TestSupport
import Vault
import Testing
@testable import Audit

/// The bytes of a SQLite database file that hold a table's rows, found by walking its b-tree as the file format
/// (sqlite.org/fileformat2.html) lays it out: per page, the cell count and the cell pointer array; per cell, its
/// length, its rowid and (in a leaf) the record with its header. Free space and the page's free-space bookkeeping
/// (first freeblock, content start, fragmented bytes) carry nothing of a row, so they are not listed; nor are an
/// interior page's copies of rowids (below).
struct TableBytes {
    /// A byte of the file, the rowid of the row it belongs to (nil for the bytes that several rows share: a page's
    /// cell count and pointers, an interior page's child pointers), and the bits of it that SQLite reads: all of
    /// them but in a cell pointer's first byte, where SQLite masks the offset to the page's size (in 4 KiB pages the
    /// top four bits are read by nothing).
    var positions: [(offset: Int, rowid: Int64?, bits: UInt8)] = []
    /// The smallest rowid of each leaf page's rows, by page number: a change that garbles how a page is read may
    /// surface at any row of that page.
    var pageFirst: [Int: Int64] = [:]

    init(file: [UInt8], rootPage: Int) throws {
        let pageSize = Int(file[16]) << 8 | Int(file[17]) == 1 ? 65_536 : Int(file[16]) << 8 | Int(file[17])
        var pages = [rootPage]
        while let page = pages.popLast() {
            let base = (page - 1) * pageSize
            let header = base + (page == 1 ? 100 : 0)
            let type = file[header]
            // 0x0D and 0x05: a table's leaf and interior pages; 0x0A and 0x02: an index's (a WITHOUT ROWID table).
            guard [0x0D, 0x05, 0x0A, 0x02].contains(type) else { throw CocoaError(.fileReadCorruptFile) }
            let leaf = type == 0x0D || type == 0x0A, keyed = type == 0x0D || type == 0x05
            let cells = Int(file[header + 3]) << 8 | Int(file[header + 4])
            positions += [(header, nil, 0xFF), (header + 3, nil, 0xFF), (header + 4, nil, 0xFF)]
            let pointers = header + (leaf ? 8 : 12)
            if !leaf {
                positions += (header + 8..<header + 12).map { ($0, nil, 0xFF) }
                pages.append(Self.uint32(file, header + 8))
            }
            for i in 0..<cells {
                positions += [(pointers + 2 * i, nil, UInt8(truncatingIfNeeded: (pageSize - 1) >> 8)), (pointers + 2 * i + 1, nil, 0xFF)]
                let cell = base + (Int(file[pointers + 2 * i]) << 8 | Int(file[pointers + 2 * i + 1]))
                var at = cell
                if !leaf {
                    pages.append(Self.uint32(file, cell))
                    at += 4
                }
                if keyed && !leaf {
                    // An interior table cell is a child page and a copy of a rowid that steers lookups by rowid. A
                    // changed copy reads every row as before (a scan in order never consults it); a lookup of one
                    // entry may then miss it, which a proof for it shows. Only the child pointer is listed.
                    positions += (cell..<at).map { ($0, nil, 0xFF) }
                    continue
                }
                let (payload, n1) = Self.varint(file, at)
                at += n1
                var rowid: Int64?
                if keyed {
                    let (key, n2) = Self.varint(file, at)
                    rowid = Int64(key)
                    at += n2
                }
                // Rows of the log are far below the size that would spill to an overflow page.
                guard Int(payload) <= pageSize - 35 else { throw CocoaError(.fileReadCorruptFile) }
                if leaf, let rowid { pageFirst[page] = min(pageFirst[page] ?? rowid, rowid) }
                positions += (cell..<at + Int(payload)).map { ($0, leaf ? rowid : nil, 0xFF) }
            }
        }
    }

    static func uint32(_ file: [UInt8], _ at: Int) -> Int {
        file[at..<at + 4].reduce(0) { $0 << 8 | Int($1) }
    }

    /// SQLite's big-endian varint: up to 9 bytes, 7 bits each, the ninth all 8.
    static func varint(_ file: [UInt8], _ at: Int) -> (UInt64, Int) {
        var value: UInt64 = 0
        for i in 0..<8 {
            let byte = file[at + i]
            value = value << 7 | UInt64(byte & 0x7F)
            if byte & 0x80 == 0 { return (value, i + 1) }
        }
        return (value << 8 | UInt64(file[at + 8]), 9)
    }
}

/// Privacy check 10: "flipping any single byte (1,000 random positions → 1,000 detections)", on the log's file as
/// an attacker with the disk would change it: the raw bytes, not values through SQL.
@Suite struct AuditFileBytesTests {
    /// A log of `entries` entries with heads, in a single file (its WAL copied in), and the file's bytes.
    static func pristine(entries: Int) async throws -> (file: [UInt8], directory: String, publicKey: SigningPublicKey) {
        let f = try AuditFixture(checkpointInterval: 10, fullSync: false)
        try await f.fill(entries)
        try await f.log.checkpoint()
        let directory = (f.path as NSString).deletingLastPathComponent
        let copy = directory + "/pristine.sqlite"
        try await DatabaseQueue(path: f.path).writeWithoutTransaction { try $0.execute(sql: "VACUUM INTO ?", arguments: [copy]) }
        return (try [UInt8](Data(contentsOf: URL(fileURLWithPath: copy))), directory, f.signer.publicKey)
    }

    /// A random non-zero XOR mask of `bits`.
    static func change(within bits: UInt8, using random: inout TestRandom) -> UInt8 {
        while true {
            let mask = UInt8.random(in: 1...255, using: &random) & bits
            if mask != 0 { return mask }
        }
    }

    /// What SQLite reads from `table` in `path`, every column with its type; nil when it cannot read it.
    static func contents(of table: String, in path: String) -> [[DatabaseValue]]? {
        try? DatabaseQueue(path: path).read { db in try Row.fetchAll(db, sql: "SELECT * FROM \(table)").map { Array($0.databaseValues) } }
    }

    /// A pristine log of `entries` entries, its file copied to a scratch path, the bytes that hold `table`'s rows, and
    /// what SQLite reads from `table` before any change.
    static func setUp(
        entries: Int, table: String
    ) async throws -> (file: [UInt8], scratch: String, key: SigningPublicKey, bytes: TableBytes, original: [[DatabaseValue]]) {
        let (file, directory, key) = try await pristine(entries: entries)
        let scratch = directory + "/changed.sqlite"
        try Data(file).write(to: URL(fileURLWithPath: scratch))
        let bytes = try TableBytes(file: file, rootPage: try rootPage(table, in: scratch))
        return (file, scratch, key, bytes, try #require(contents(of: table, in: scratch)))
    }

    /// Writes `file` to `scratch` with one byte changed (at a random position of `bytes`, by a random mask of the bits
    /// SQLite reads there); returns the position and what SQLite now reads from `table` (nil when it cannot).
    static func changeOneByte(
        of file: [UInt8], among bytes: TableBytes, table: String, at scratch: String, using random: inout TestRandom
    ) throws -> (position: (offset: Int, rowid: Int64?, bits: UInt8), now: [[DatabaseValue]]?) {
        let position = bytes.positions.randomElement(using: &random)!
        var changed = file
        changed[position.offset] ^= change(within: position.bits, using: &random)
        try Data(changed).write(to: URL(fileURLWithPath: scratch))
        return (position, contents(of: table, in: scratch))
    }

    static func rootPage(_ table: String, in path: String) throws -> Int {
        try DatabaseQueue(path: path).read { try Int.fetchOne($0, sql: "SELECT rootpage FROM sqlite_master WHERE name = ?", arguments: [table])! }
    }

    /// Each trial changes one byte (XOR with a random non-zero value) at a random position among the bytes that hold
    /// the entries (their length, sequence number, record header and fields, and the pages' cell counts and pointers)
    /// and verifies the changed file. Every change must fail verification, at the entry it hit when it hit one: a
    /// change to a length or a sequence number that garbles how the rows are read may be named at an earlier entry
    /// of the same page, never before the page nor after the one it hit. A few changes leave SQLite reading exactly the same rows (a
    /// record's header size grown past what it parses, a NULL's serial type turned into a reserved one it also reads
    /// as NULL): they change nothing any reader sees, and are counted apart, and must stay rare.
    @Test func everyChangedByteOfTheEntriesIsDetectedAtItsEntry() async throws {
        let (file, scratch, key, entries, original) = try await Self.setUp(entries: 57, table: "entries")
        #expect(entries.positions.count > 57 * 200, "the walk found \(entries.positions.count) bytes for 57 entries")
        #expect(try AuditReader(path: scratch).verify(publicKey: key).intact)

        var random = TestRandom()
        var misses: [String] = []
        var unseen = 0
        for trial in 0..<1_000 {
            let ((offset, rowid, _), now) = try Self.changeOneByte(of: file, among: entries, table: "entries", at: scratch, using: &random)
            if now == original {
                unseen += 1
                continue
            }
            let verdict: String
            do {
                let result = try AuditReader(path: scratch).verify(publicKey: key)
                if let bad = result.firstBadSequence {
                    let first = entries.pageFirst[offset / 4096 + 1] ?? 1
                    if let rowid, bad > rowid || bad < first {
                        verdict = "named entry \(bad), outside \(first)…\(rowid) (its page's first to the one it hit): \(result.reason ?? "")"
                    } else {
                        continue
                    }
                } else {
                    verdict = "verified intact"
                }
            } catch {
                // A file SQLite itself calls damaged fails verification too (the command exits non-zero); but the
                // log's verifier should name the entry, so such a trial is counted as a miss here.
                verdict = "threw \(error)"
            }
            misses.append(
                "trial \(trial), offset \(offset) (page \(offset / 4096 + 1) +\(offset % 4096), type \(file[offset / 4096 * 4096]), entry \(rowid.map(String.init) ?? "shared")): \(verdict)"
            )
        }
        #expect(unseen < 50, "\(unseen) of 1,000 changes read back unchanged")
        #expect(
            misses.isEmpty,
            "\(misses.count) of 1,000 changes not detected at their entry (seed \(random.seed)):\n\(misses.prefix(10).joined(separator: "\n"))")
    }

    /// The page of the signed heads damaged past reading is named at entry 1; an entry changed further on is still
    /// reported beside it, not hidden behind it.
    @Test func anUnreadablePageOfHeadsDoesNotHideAChangedEntry() async throws {
        let (file, scratch, key, entries, _) = try await Self.setUp(entries: 2_600, table: "entries")
        var changed = file
        let heads = try Self.rootPage("tree_heads", in: scratch)
        changed[(heads - 1) * 4096] = 0x00  // no b-tree page has this type
        // The last byte of entry 1,000's record: a digit of its stored digest.
        let digit = try #require(entries.positions.last { $0.rowid == 1_000 })
        changed[digit.offset] ^= 0x01
        try Data(changed).write(to: URL(fileURLWithPath: scratch))
        #expect(Self.contents(of: "tree_heads", in: scratch) == nil, "the heads' page should be unreadable")
        let result = try AuditReader(path: scratch).verify(publicKey: key)
        #expect(result.firstBadSequence == 1 && result.reason?.contains("signed heads cannot be read") == true, "\(result.reason ?? "")")
        #expect(result.failures?.contains { $0.sequence == 1_000 } == true, "the changed entry is hidden: \(result.failures ?? [])")
    }

    /// The same for the bytes of the signed heads (their size, root, stored time and signed note) and of the stored
    /// tree, which proofs are built from. A change that only takes heads away (a page's cell count lowered) is the
    /// deleted-heads attack, which a log cannot see on its own (a head held elsewhere does: TransparencyLogTests); it
    /// is counted apart with the changes SQLite reads back unchanged.
    @Test(arguments: ["tree_heads", "tree_nodes"])
    func everyChangedByteOfTheHeadsAndTheTreeIsDetected(_ table: String) async throws {
        // A node is stored per 256 entries; heads (one per 10) then span several pages.
        let (file, scratch, key, bytes, original) = try await Self.setUp(entries: 2_600, table: table)
        #expect(bytes.positions.count > 100)

        var random = TestRandom()
        var misses: [String] = []
        var unseen = 0
        for trial in 0..<300 {
            let ((offset, _, _), read) = try Self.changeOneByte(of: file, among: bytes, table: table, at: scratch, using: &random)
            if let now = read,
                now == original || (table == "tree_heads" && Set(now).count == now.count && now.allSatisfy(original.contains))
            {
                unseen += 1
                continue
            }
            do {
                if try AuditReader(path: scratch).verify(publicKey: key).intact {
                    let now = read ?? []
                    let diff = zip(original, now).first { $0 != $1 }.map { "\($0.0) became \($0.1)" } ?? "\(original.count) rows became \(now.count)"
                    misses.append("trial \(trial), offset \(offset): verified intact; \(diff)")
                }
            } catch {
                misses.append("trial \(trial), offset \(offset): threw \(error)")
            }
        }
        #expect(unseen < 15, "\(unseen) of 300 changes read back unchanged or only removed heads")
        #expect(
            misses.isEmpty,
            "\(misses.count) of 300 changes to \(table) not detected (seed \(random.seed)):\n\(misses.prefix(10).joined(separator: "\n"))")
    }
}
