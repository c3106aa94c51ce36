/// Why model bytes could not be read, or a model could not be written. Reasons name fields, never data.
public enum ModelCodingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The bytes do not start with the model magic.
    case notAModel(String)
    /// A model written in a format version this code does not read.
    case unsupportedVersion(String)
    /// The bytes end before the model does (or a length points past their end).
    case truncated(String)
    /// Well-formed bytes that do not describe a consistent model.
    case inconsistent(String)
    /// A model this format cannot hold (at encoding time).
    case unencodable(String)

    public var description: String {
        switch self {
        case .notAModel(let reason): "not a model encoding: \(reason)"
        case .unsupportedVersion(let reason): "unsupported model format: \(reason)"
        case .truncated(let reason): "truncated model: \(reason)"
        case .inconsistent(let reason): "inconsistent model: \(reason)"
        case .unencodable(let reason): "model cannot be encoded: \(reason)"
        }
    }
}

/// The model encoding's header: magic and format version. Bump the version with any change to what is written.
package enum ModelCoding {
    package static let magic: [UInt8] = Array("VMDL".utf8)
    package static let formatVersion: UInt16 = 1
}

/// Fixed-width values that numeric arrays are copied as, whole, in little-endian order.
package protocol ModelScalar: BitwiseCopyable {
    var byteSwapped: Self { get }
}
extension UInt8: ModelScalar {}
extension UInt16: ModelScalar {}
extension UInt64: ModelScalar {}
extension Int32: ModelScalar {}
extension Int64: ModelScalar {}
extension Int: ModelScalar {}
extension Float: ModelScalar {
    package var byteSwapped: Float { Float(bitPattern: bitPattern.byteSwapped) }
}
extension Double: ModelScalar {
    package var byteSwapped: Double { Double(bitPattern: bitPattern.byteSwapped) }
}

/// Appends a model's parts: little-endian scalars, arrays as a 64-bit count then their elements copied in one go
/// (models reach hundreds of megabytes), strings as UTF-8. Starts with the header.
package struct ModelWriter {
    package private(set) var bytes: [UInt8] = []

    package init() {
        bytes += ModelCoding.magic
        scalar(ModelCoding.formatVersion)
    }

    package mutating func scalar<T: ModelScalar>(_ value: T) {
        #if _endian(little)
            withUnsafeBytes(of: value) { bytes += $0 }
        #else
            withUnsafeBytes(of: value.byteSwapped) { bytes += $0 }
        #endif
    }

    package mutating func count(_ n: Int) { scalar(UInt64(n)) }
    package mutating func int(_ value: Int) { scalar(Int64(value)) }
    package mutating func bool(_ value: Bool) { scalar(UInt8(value ? 1 : 0)) }
    package mutating func float(_ value: Float) { scalar(value) }
    package mutating func double(_ value: Double) { scalar(value) }

    package mutating func string(_ value: String) {
        var value = value
        value.withUTF8 {
            count($0.count)
            bytes += $0
        }
    }

    package mutating func array<T: ModelScalar>(_ values: [T]) {
        count(values.count)
        #if _endian(little)
            values.withUnsafeBytes { bytes += $0 }
        #else
            values.map(\.byteSwapped).withUnsafeBytes { bytes += $0 }
        #endif
    }

    package mutating func floats(_ values: [Float]) { array(values) }
    package mutating func doubles(_ values: [Double]) { array(values) }
    package mutating func int32s(_ values: [Int32]) { array(values) }
    package mutating func int64s(_ values: [Int64]) { array(values) }
    package mutating func uint64s(_ values: [UInt64]) { array(values) }

    /// As 64-bit integers.
    package mutating func ints(_ values: [Int]) {
        if MemoryLayout<Int>.size == 8 { array(values) } else { array(values.map(Int64.init)) }
    }

    /// One byte each, 0 or 1.
    package mutating func bools(_ values: [Bool]) {
        count(values.count)
        values.withUnsafeBytes { bytes += $0 }
    }

    package mutating func strings(_ values: [String]) {
        count(values.count)
        for s in values { string(s) }
    }

    /// The entry count, then each key and its value in key order (the same map always gives the same bytes).
    package mutating func map<V>(_ entries: [String: V], _ write: (inout ModelWriter, V) -> Void) {
        count(entries.count)
        for (key, value) in entries.sorted(by: { $0.key < $1.key }) {
            string(key)
            write(&self, value)
        }
    }

    /// A presence byte, then the value when there is one.
    package mutating func optional<T, E: Error>(_ value: T?, _ write: (inout ModelWriter, T) throws(E) -> Void) throws(E) {
        bool(value != nil)
        if let value { try write(&self, value) }
    }
}

/// Reads what ``ModelWriter`` wrote. Every read is bounds-checked, and every count is checked against the bytes
/// left before anything is allocated: hostile bytes make it throw, never trap or allocate without bound.
package struct ModelReader {
    private let bytes: [UInt8]
    private var at: Int

    /// Checks the header.
    package init(_ bytes: [UInt8]) throws(ModelCodingError) {
        self.bytes = bytes
        at = 0
        guard bytes.count >= ModelCoding.magic.count, Array(bytes[0..<ModelCoding.magic.count]) == ModelCoding.magic else {
            throw .notAModel("magic")
        }
        at = ModelCoding.magic.count
        let version: UInt16 = try scalar("format version")
        guard version == ModelCoding.formatVersion else { throw .unsupportedVersion("version \(version), expected \(ModelCoding.formatVersion)") }
    }

    package var remaining: Int { bytes.count - at }

    /// Throws unless every byte was read.
    package func finish() throws(ModelCodingError) {
        guard at == bytes.count else { throw .inconsistent("\(remaining) trailing bytes") }
    }

    private mutating func take(_ n: Int, _ what: String) throws(ModelCodingError) -> Range<Int> {
        guard n >= 0, n <= remaining else { throw .truncated(what) }
        defer { at += n }
        return at..<(at + n)
    }

    package mutating func scalar<T: ModelScalar>(_ what: String) throws(ModelCodingError) -> T {
        let range = try take(MemoryLayout<T>.size, what)
        let value = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: range.lowerBound, as: T.self) }
        #if _endian(little)
            return value
        #else
            return value.byteSwapped
        #endif
    }

    /// A count of elements each at least `size` bytes long: never more than the bytes left could hold.
    package mutating func count(_ what: String, elementSize size: Int = 1) throws(ModelCodingError) -> Int {
        let n: UInt64 = try scalar(what)
        guard n <= UInt64(remaining / max(size, 1)) else { throw .truncated("\(what): \(n) elements past the end") }
        return Int(n)
    }

    package mutating func int(_ what: String) throws(ModelCodingError) -> Int {
        let value: Int64 = try scalar(what)
        guard let int = Int(exactly: value) else { throw .inconsistent("\(what) out of range") }
        return int
    }

    /// A non-negative integer.
    package mutating func size(_ what: String) throws(ModelCodingError) -> Int {
        let n = try int(what)
        guard n >= 0 else { throw .inconsistent("\(what) negative") }
        return n
    }

    package mutating func bool(_ what: String) throws(ModelCodingError) -> Bool {
        let byte: UInt8 = try scalar(what)
        guard byte <= 1 else { throw .inconsistent("\(what) not a boolean") }
        return byte == 1
    }

    package mutating func float(_ what: String) throws(ModelCodingError) -> Float { try scalar(what) }
    package mutating func double(_ what: String) throws(ModelCodingError) -> Double { try scalar(what) }

    package mutating func string(_ what: String) throws(ModelCodingError) -> String {
        let range = try take(try count(what), what)
        guard let s = String(validating: bytes[range], as: UTF8.self) else { throw .inconsistent("\(what) not UTF-8") }
        return s
    }

    package mutating func array<T: ModelScalar>(_ what: String) throws(ModelCodingError) -> [T] {
        let n = try count(what, elementSize: MemoryLayout<T>.stride)
        let range = try take(n * MemoryLayout<T>.stride, what)
        guard n > 0 else { return [] }
        let values = [T](unsafeUninitializedCapacity: n) { out, initialized in
            bytes.withUnsafeBytes { source in
                UnsafeMutableRawBufferPointer(out).copyMemory(from: UnsafeRawBufferPointer(rebasing: source[range]))
            }
            initialized = n
        }
        #if _endian(little)
            return values
        #else
            return values.map(\.byteSwapped)
        #endif
    }

    package mutating func floats(_ what: String) throws(ModelCodingError) -> [Float] { try array(what) }
    package mutating func doubles(_ what: String) throws(ModelCodingError) -> [Double] { try array(what) }
    package mutating func int32s(_ what: String) throws(ModelCodingError) -> [Int32] { try array(what) }
    package mutating func int64s(_ what: String) throws(ModelCodingError) -> [Int64] { try array(what) }
    package mutating func uint64s(_ what: String) throws(ModelCodingError) -> [UInt64] { try array(what) }

    package mutating func ints(_ what: String) throws(ModelCodingError) -> [Int] {
        if MemoryLayout<Int>.size == 8 { return try array(what) }
        let wide: [Int64] = try array(what)
        guard wide.allSatisfy({ Int(exactly: $0) != nil }) else { throw .inconsistent("\(what) out of range") }
        return wide.map { Int($0) }
    }

    package mutating func bools(_ what: String) throws(ModelCodingError) -> [Bool] {
        let raw: [UInt8] = try array(what)
        guard raw.allSatisfy({ $0 <= 1 }) else { throw .inconsistent("\(what) not booleans") }
        return raw.map { $0 == 1 }
    }

    package mutating func strings(_ what: String) throws(ModelCodingError) -> [String] {
        let n = try count(what, elementSize: 8)
        var out: [String] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try string(what)) }
        return out
    }

    package mutating func optional<T>(_ what: String, _ read: (inout ModelReader) throws(ModelCodingError) -> T) throws(ModelCodingError) -> T? {
        try bool(what) ? try read(&self) : nil
    }
}

/// Checks made on decoded parts before they reach initialisers with preconditions or indexing code without checks.
package enum ModelCheck {
    package static func require(_ condition: Bool, _ reason: @autoclosure () -> String) throws(ModelCodingError) {
        guard condition else { throw .inconsistent(reason()) }
    }

    /// Every index in `0..<bound`.
    package static func indices(_ values: [Int32], below bound: Int, _ what: String) throws(ModelCodingError) {
        var low = Int32.max, high = Int32.min
        for v in values {
            low = min(low, v)
            high = max(high, v)
        }
        try require(values.isEmpty || (low >= 0 && Int(high) < bound), "\(what) out of range")
    }

    /// CSR offsets: `rows + 1` of them, from 0, non-decreasing, ending at `total`.
    package static func offsets(_ offsets: [Int], rows: Int, total: Int, _ what: String) throws(ModelCodingError) {
        try require(offsets.count - 1 == rows && offsets.first == 0 && offsets.last == total, "\(what) offsets")
        for r in 0..<rows where offsets[r] > offsets[r + 1] { throw .inconsistent("\(what) offsets decrease") }
    }

    /// `a × b` when it does not overflow.
    package static func product(_ a: Int, _ b: Int, _ what: String) throws(ModelCodingError) -> Int {
        let (p, overflow) = a.multipliedReportingOverflow(by: b)
        try require(!overflow, "\(what) too large")
        return p
    }
}
