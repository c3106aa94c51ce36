/// Where a long computation says how far it is: a model names its phase and counts its steps, and whoever started it
/// (the command line on a terminal, the server's log) decides how to show that. Reports come from worker threads.
public struct ProgressReporter: Sendable {
    public struct Update: Sendable {
        /// The model or job ("als", "hybrid", "import").
        public let task: String
        /// Its current phase ("fit", "gram", "solve", "validation").
        public let phase: String
        public let done: Int
        /// 0 when the phase cannot say how many steps it has.
        public let total: Int
    }

    private let sink: (@Sendable (Update) -> Void)?

    public init(_ sink: @escaping @Sendable (Update) -> Void) { self.sink = sink }
    private init() { sink = nil }

    /// Reports nothing.
    public static let silent = ProgressReporter()

    /// A new phase begins.
    public func phase(_ task: String, _ phase: String, total: Int = 0) {
        sink?(Update(task: task, phase: phase, done: 0, total: total))
    }

    /// `done` of the current phase's `total` steps are finished.
    public func advance(_ task: String, _ phase: String, done: Int, total: Int) {
        sink?(Update(task: task, phase: phase, done: done, total: total))
    }
}

extension ProgressReporter {
    /// Reports to this reporter and to `other`.
    public func and(_ other: ProgressReporter) -> ProgressReporter {
        switch (sink, other.sink) {
        case (nil, _): other
        case (_, nil): self
        case (let first?, let second?):
            ProgressReporter {
                first($0); second($0)
            }
        }
    }
}
