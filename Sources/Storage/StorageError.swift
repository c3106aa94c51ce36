/// The one error type of the Storage module. Messages carry no tokens or plaintext.
public struct StorageError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: String, Sendable {
        /// The database file or its directory cannot be opened or created.
        case cannotOpen
        /// A migration failed.
        case migrationFailed
        /// A sealed value could not be opened (shredded subject, wrong row, altered bytes or retired key).
        case unreadable
        /// The subject's data key was shredded.
        case shredded
        /// The disk holding the database is full (SQLITE_FULL, or ENOSPC from a sync): nothing was written.
        case full
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
    public static func == (l: StorageError, r: StorageError) -> Bool { l.code == r.code }
}
