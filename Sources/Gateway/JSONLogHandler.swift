import Foundation
import VeilCore
import Logging
import Synchronization

/// Structured logs: one JSON object per line on standard error, with `time`, `level`, `label`, `message` and the
/// metadata as string fields.
///
/// Formatting happens only when a line is written. swift-log's `StreamLogHandler` renders its metadata again on
/// every metadata change, and Hummingbird sets a request id on each request's logger: under serving load that
/// rendering cost CPU although nothing was logged (docs/design-notes.md).
///
/// Personal data stays out by construction of the call sites (the gateway logs tokens, counts and error types,
/// never ids or bodies); `scripts/secrets_scan.py` checks server logs for raw ids in CI.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level = .info
    private let label: String
    private let sink: Sink

    /// Where lines go; shared by every handler of the process so that concurrent lines never interleave.
    public final class Sink: Sendable {
        private let lock = Mutex(())
        private let write: @Sendable (String) -> Void
        public init(_ write: @escaping @Sendable (String) -> Void) { self.write = write }
        func emit(_ line: String) { lock.withLock { _ in write(line) } }

        /// Standard error, a line per `write(2)` (continued if the kernel takes part of it).
        public static let standardError = Sink { line in
            var line = line
            line.withUTF8 { buffer in
                var offset = 0
                while offset < buffer.count {
                    let n = Foundation.write(2, buffer.baseAddress! + offset, buffer.count - offset)
                    if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { return }
                }
            }
        }
    }

    /// The clock that stamps each line.
    let now: @Sendable () -> Date

    public init(
        label: String, sink: Sink = .standardError, metadataProvider: Logger.MetadataProvider? = nil, now: @escaping @Sendable () -> Date = Date.init
    ) {
        self.label = label
        self.sink = sink
        self.metadataProvider = metadataProvider
        self.now = now
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let provided = metadataProvider?.get() { fields.merge(provided) { $1 } }
        if let own = event.metadata { fields.merge(own) { $1 } }
        sink.emit(Self.line(time: now(), level: event.level, label: label, message: event.message.description, metadata: fields))
    }

    /// One log line, newline included. Metadata keys are sorted so lines diff and grep predictably; the four
    /// fixed keys win over metadata of the same name.
    static func line(time: Date, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(128 + message.utf8.count)
        out.append(contentsOf: "{\"time\":".utf8)
        JSONText.string(timestamp(time), into: &out)
        out.append(contentsOf: ",\"level\":".utf8)
        JSONText.string(level.rawValue, into: &out)
        out.append(contentsOf: ",\"label\":".utf8)
        JSONText.string(label, into: &out)
        out.append(contentsOf: ",\"message\":".utf8)
        JSONText.string(message, into: &out)
        for key in metadata.keys.sorted() where !["time", "level", "label", "message"].contains(key) {
            out.append(UInt8(ascii: ","))
            JSONText.string(key, into: &out)
            out.append(UInt8(ascii: ":"))
            JSONText.string(render(metadata[key]!), into: &out)
        }
        out.append(contentsOf: "}\n".utf8)
        return String(decoding: out, as: UTF8.self)
    }

    private static func render(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let s): s
        case .stringConvertible(let c): c.description
        case .array(let values): "[" + values.map(render).joined(separator: ", ") + "]"
        case .dictionary(let d): "[" + d.keys.sorted().map { "\($0): \(render(d[$0]!))" }.joined(separator: ", ") + "]"
        }
    }

    /// RFC 3339 in UTC with milliseconds.
    static func timestamp(_ date: Date) -> String {
        let millis = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(millis / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis % 1000), 3))Z"
    }
}
