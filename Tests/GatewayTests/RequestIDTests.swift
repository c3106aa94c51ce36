@testable import Gateway
@testable import VeilCore
import Testing

@Suite struct RequestIDTests {
    /// Ids come from a pooled random draw: they must stay distinct and well-formed across refills of the pool
    /// (512 ids per draw) and under concurrent callers.
    @Test func idsAreDistinctHexAcrossPoolRefillsAndThreads() async {
        let ids = await withTaskGroup(of: [String].self) { group in
            for _ in 0..<4 { group.addTask { (0..<2_500).map { _ in RequestID.next() } } }
            var all: [String] = []
            for await part in group { all += part }
            return all
        }
        #expect(ids.count == 10_000)
        #expect(Set(ids).count == ids.count)
        #expect(ids.allSatisfy { $0.utf8.count == 16 && $0.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) } })
    }
}
