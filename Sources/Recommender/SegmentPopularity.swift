/// Popularity within generalized demographic segments, for subjects without history (cold start).
///
/// Every user carries keys from the finest segment to the coarsest (say age band × region × device class, then
/// age band × region, then region). A segment is kept only when at least `minimumUsers` distinct users are in
/// it, so a list never reflects what a handful of identifiable people did (k-anonymity); a lookup walks
/// from the finest key to the coarsest and answers with the first segment that was kept.
public struct SegmentPopularity: Sendable {
    public let minimumUsers: Int
    public let itemCount: Int
    /// Counts of users who interacted with each item, per kept segment key.
    let counts: [String: [Float]]

    /// - Parameters:
    ///   - userSegments: per matrix row, the user's segment keys from finest to coarsest (empty when unknown).
    public init(matrix: SparseMatrix, userSegments: [[String]], minimumUsers: Int = 5) {
        precondition(minimumUsers >= 1)
        self.minimumUsers = minimumUsers
        itemCount = matrix.columns
        var members: [String: [Int]] = [:]
        for (u, keys) in userSegments.enumerated() where u < matrix.rows {
            for key in Set(keys) { members[key, default: []].append(u) }
        }
        var counts: [String: [Float]] = [:]
        for (key, users) in members where users.count >= minimumUsers {
            var row = [Float](repeating: 0, count: matrix.columns)
            for u in users {
                for p in matrix.offsets[u]..<matrix.offsets[u + 1] { row[Int(matrix.indices[p])] += 1 }
            }
            counts[key] = row
        }
        self.counts = counts
    }

    /// The first kept segment among `keys` (finest first): its position in `keys` and its item counts.
    public func lookup(_ keys: [String]) -> (level: Int, counts: [Float])? {
        for (level, key) in keys.enumerated() {
            if let row = counts[key] { return (level, row) }
        }
        return nil
    }

    /// How many segments were kept.
    public var segmentCount: Int { counts.count }
}
