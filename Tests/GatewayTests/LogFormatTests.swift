import Foundation
@testable import Gateway
@testable import VeilCore
import GRDB
import SQLiteStorage
import Logging
import Synchronization
import Testing

@Suite struct LogFormatTests {
    /// Collects what the handler writes.
    final class Lines: Sendable {
        let lines = Mutex<[String]>([])
        var sink: JSONLogHandler.Sink { JSONLogHandler.Sink { line in self.lines.withLock { $0.append(line) } } }
        var objects: [[String: String]] {
            lines.withLock { $0 }.map { line in
                #expect(line.hasSuffix("\n") && line.dropLast().allSatisfy { $0 != "\n" }, "one line per entry")
                return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: String] ?? [:]
            }
        }
    }

    @Test func linesAreJSONObjectsWithMetadataAndLevelFiltering() throws {
        let out = Lines()
        var logger = Logger(label: "veil") { JSONLogHandler(label: $0, sink: out.sink) }
        logger.logLevel = .info
        logger[metadataKey: "request_id"] = "abc123"
        logger.debug("not written: below the level")
        logger.info("model \"trained\"\nin 2 s", metadata: ["users": "943", "path": .array(["a", "b"])])
        logger.error("failed", metadata: ["message": "a metadata key may not replace the message"])

        let objects = out.objects
        try #require(objects.count == 2)
        #expect(objects[0]["level"] == "info")
        #expect(objects[0]["label"] == "veil")
        #expect(objects[0]["message"] == "model \"trained\"\nin 2 s")
        #expect(objects[0]["request_id"] == "abc123")
        #expect(objects[0]["users"] == "943")
        #expect(objects[0]["path"] == "[a, b]")
        #expect(objects[1]["level"] == "error")
        #expect(objects[1]["message"] == "failed")
        let time = try #require(objects[0]["time"])
        let parsed = try #require(ISO8601DateFormatter.withFractionalSeconds.date(from: time))
        #expect(abs(parsed.timeIntervalSinceNow) < 60)
    }

    @Test func metadataProviderAndEventMetadataOverrideHandlerMetadata() throws {
        let out = Lines()
        let provider = Logger.MetadataProvider { ["trace": "t1", "shared": "provider"] }
        var logger = Logger(label: "x") { JSONLogHandler(label: $0, sink: out.sink, metadataProvider: provider) }
        logger[metadataKey: "shared"] = "handler"
        logger.warning("w", metadata: ["shared": "event"])
        logger.warning("w")
        let objects = out.objects
        try #require(objects.count == 2)
        #expect(objects[0]["trace"] == "t1")
        #expect(objects[0]["shared"] == "event")
        #expect(objects[1]["shared"] == "provider")
    }

    @Test func loggedErrorReasonsNameTheProblemButNoValue() throws {
        let subject = "alice@example.com"
        let database = DatabaseError(
            resultCode: .SQLITE_CONSTRAINT, message: "UNIQUE constraint failed: interactions.id",
            sql: "INSERT INTO interactions (id, subject) VALUES (?, ?)", arguments: ["e1", subject])
        #expect(loggableReason(database) == "SQLite error 19 (constraint failed): UNIQUE constraint failed: interactions.id")
        struct Quoting: Error, CustomStringConvertible { let description: String }
        #expect(loggableReason(Quoting(description: "bad subject \(subject)")) == "Quoting")
        #expect(loggableReason(GatewayError.internalError).hasPrefix("500 internal"))
        // What a failed background run writes to the log, through the server's JSON handler.
        let out = Lines()
        var logger = Logger(label: "veil") { JSONLogHandler(label: $0, sink: out.sink) }
        logger.logLevel = .info
        PeriodicService.logFailure("retention run", database, logger)
        PeriodicService.logFailure("retention run", Quoting(description: subject), logger)
        PeriodicService.logFailure("retention run", CancellationError(), logger)
        let objects = out.objects
        #expect(objects.map { $0["level"] ?? "" } == ["error", "error", "info"])
        #expect(objects.map { $0["message"] ?? "" } == ["retention run failed", "retention run failed", "retention run stopped by shutdown"])
        #expect(objects[0]["error"] == "SQLite error 19 (constraint failed): UNIQUE constraint failed: interactions.id")
        #expect(!out.lines.withLock { $0.joined() }.contains("alice"))
    }

    @Test func timestampsAreRFC3339InUTC() {
        #expect(JSONLogHandler.timestamp(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        #expect(JSONLogHandler.timestamp(Date(timeIntervalSince1970: 1_795_945_601.25)) == "2026-11-29T09:46:41.250Z")
    }
}

extension ISO8601DateFormatter {
    fileprivate static var withFractionalSeconds: ISO8601DateFormatter {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }
}
