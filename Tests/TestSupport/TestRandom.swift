import Foundation
import Recommender
import Testing

/// A seeded generator for tests that draw random data (`Recommender.SeededGenerator`). The seed is `VEIL_TEST_SEED`
/// when set, to replay a failing run, and a fresh one otherwise; it is printed when the generator is made, at the
/// start of the test.
public struct TestRandom: RandomNumberGenerator {
    public let seed: UInt64
    private var generator: SeededGenerator

    public init(test: String = #function) {
        let variable = ProcessInfo.processInfo.environment["VEIL_TEST_SEED"]
        let given = variable.flatMap { text -> UInt64? in
            text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
        }
        if let variable, given == nil { Issue.record("VEIL_TEST_SEED=\(variable) is not an unsigned 64-bit integer") }
        var system = SystemRandomNumberGenerator()
        seed = given ?? system.next()
        generator = SeededGenerator(seed: seed)
        print("\(test): seed \(seed) (replay with VEIL_TEST_SEED=\(seed))")
    }

    public mutating func next() -> UInt64 { generator.next() }
}
