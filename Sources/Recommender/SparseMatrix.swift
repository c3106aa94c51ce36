/// One observed interaction between a dense user index and a dense item index.
public struct Interaction: Sendable, Hashable {
    public var user: Int32
    public var item: Int32
    /// Strength of the signal (a count, a rating, a kind weight); 1 for plain implicit feedback.
    public var weight: Float
    /// Seconds since the epoch.
    public var time: Int64

    public init(user: Int32, item: Int32, weight: Float = 1, time: Int64 = 0) {
        self.user = user
        self.item = item
        self.weight = weight
        self.time = time
    }
}

/// A compressed sparse row matrix with `Float` values; rows are sorted by column, duplicates summed.
public struct SparseMatrix: Sendable {
    public let rows: Int
    public let columns: Int
    /// Row `r` occupies `indices[offsets[r]..<offsets[r+1]]`.
    public let offsets: [Int]
    public let indices: [Int32]
    public let values: [Float]

    public var nonZeroCount: Int { indices.count }

    /// Builds a matrix from (row, column, value) triples. Duplicate cells are summed.
    public init(rows: Int, columns: Int, entries: [(row: Int32, column: Int32, value: Float)]) {
        precondition(rows >= 0 && columns >= 0)
        var counts = [Int](repeating: 0, count: rows + 1)
        for e in entries {
            precondition(Int(e.row) < rows && Int(e.column) < columns && e.row >= 0 && e.column >= 0, "entry out of range")
            counts[Int(e.row) + 1] += 1
        }
        for r in 0..<rows { counts[r + 1] += counts[r] }
        var cursor = counts
        var cols = [Int32](repeating: 0, count: entries.count)
        var vals = [Float](repeating: 0, count: entries.count)
        for e in entries {
            let p = cursor[Int(e.row)]
            cols[p] = e.column
            vals[p] = e.value
            cursor[Int(e.row)] += 1
        }
        // Sort each row by column and merge duplicates.
        var outOffsets = [Int](repeating: 0, count: rows + 1)
        var outCols = [Int32]()
        var outVals = [Float]()
        outCols.reserveCapacity(entries.count)
        outVals.reserveCapacity(entries.count)
        for r in 0..<rows {
            let range = counts[r]..<counts[r + 1]
            let pairs = range.map { (cols[$0], vals[$0]) }.sorted { $0.0 < $1.0 }
            for (c, v) in pairs {
                if let last = outCols.last, outCols.count > outOffsets[r], last == c {
                    outVals[outVals.count - 1] += v
                } else {
                    outCols.append(c)
                    outVals.append(v)
                }
            }
            outOffsets[r + 1] = outCols.count
        }
        self.rows = rows
        self.columns = columns
        self.offsets = outOffsets
        self.indices = outCols
        self.values = outVals
    }

    init(rows: Int, columns: Int, offsets: [Int], indices: [Int32], values: [Float]) {
        self.rows = rows
        self.columns = columns
        self.offsets = offsets
        self.indices = indices
        self.values = values
    }

    /// Builds a users × items matrix from interactions, summing repeated pairs.
    public init(users: Int, items: Int, interactions: [Interaction]) {
        self.init(rows: users, columns: items, entries: interactions.map { ($0.user, $0.item, $0.weight) })
    }

    /// The columns of row `r`.
    @inlinable public func columns(ofRow r: Int) -> ArraySlice<Int32> { indices[offsets[r]..<offsets[r + 1]] }

    /// The transpose (CSC of this matrix as CSR).
    public func transposed() -> SparseMatrix {
        var counts = [Int](repeating: 0, count: columns + 1)
        for c in indices { counts[Int(c) + 1] += 1 }
        for c in 0..<columns { counts[c + 1] += counts[c] }
        var cursor = counts
        var tIdx = [Int32](repeating: 0, count: indices.count)
        var tVal = [Float](repeating: 0, count: indices.count)
        for r in 0..<rows {
            for p in offsets[r]..<offsets[r + 1] {
                let c = Int(indices[p])
                tIdx[cursor[c]] = Int32(r)
                tVal[cursor[c]] = values[p]
                cursor[c] += 1
            }
        }
        return SparseMatrix(rows: columns, columns: rows, offsets: counts, indices: tIdx, values: tVal)
    }

    /// The same pattern with every value replaced by `transform(value)`.
    public func mapValues(_ transform: (Float) -> Float) -> SparseMatrix {
        SparseMatrix(rows: rows, columns: columns, offsets: offsets, indices: indices, values: values.map(transform))
    }

    /// Number of non-zeros in each column.
    public func columnCounts() -> [Int] {
        var counts = [Int](repeating: 0, count: columns)
        for c in indices { counts[Int(c)] += 1 }
        return counts
    }
}
