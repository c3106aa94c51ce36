/// An invalid policy: the file, the line (1-based, 0 when unknown) and the reason.
public struct PolicyError: Error, CustomStringConvertible, Sendable, Equatable {
    public let file: String
    public let line: Int
    public let reason: String

    public init(file: String, line: Int, reason: String) {
        self.file = file
        self.line = line
        self.reason = reason
    }

    public var description: String { line > 0 ? "\(file):\(line): \(reason)" : "\(file): \(reason)" }
}
