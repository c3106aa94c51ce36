import Foundation
#if canImport(Glibc)
    import Glibc
#endif
import Vault

/// What a witness keeps and checks: the heads a log has shown it, each one an extension of the last. Run on a machine
/// the gateway's operator does not control, it turns "the log says it was not rewritten" into something a compliance
/// officer can rely on: a cut, a rewrite or a fork shows as a head that goes backwards, two roots for one size, or a
/// consistency proof that fails.
///
/// State is a directory: `latest.note` (the newest head seen) and `heads/<size>.note` (every head seen), each a signed
/// note as the log served it, so `veil audit verify --trusted-head DIR/heads` can check a log against all of them.
public struct WitnessState: Sendable {
    public let directory: String
    public let verifier: NoteVerifier

    public init(directory: String, verifier: NoteVerifier) throws {
        self.directory = directory
        self.verifier = verifier
        try FileManager.default.createDirectory(
            atPath: directory + "/heads", withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700])
    }

    /// The newest head seen and accepted, if any: `latest.note`, or the largest in `heads/` if that is missing (a
    /// lost file must not make the witness trust the log's next head from scratch).
    public func latest() throws(WitnessError) -> (note: String, checkpoint: Checkpoint)? {
        var paths = [directory + "/latest.note"]
        if let names = try? FileManager.default.contentsOfDirectory(atPath: directory + "/heads") {
            paths += names.compactMap { name in UInt64(name.dropLast(5)).map { ($0, name) } }.sorted { $0.0 > $1.0 }.map {
                directory + "/heads/" + $0.1
            }
        }
        var best: (note: String, checkpoint: Checkpoint)?
        for path in paths where FileManager.default.fileExists(atPath: path) {
            guard let note = try? String(contentsOfFile: path, encoding: .utf8) else { throw .state("cannot read \(path)") }
            let head: Checkpoint
            do { head = try open(note) } catch { throw .state("\(path) is not a head signed by \(verifier.name): \(error)") }
            if best == nil || head.size > best!.checkpoint.size { best = (note, head) }
            if path.hasSuffix("/latest.note") { continue }
            break  // the largest of heads/
        }
        return best
    }

    /// Holds the state directory for this process (an advisory lock), so that two runs (cron overlapping a loop)
    /// cannot interleave their reads and writes. Released when the process exits.
    public func lock() throws(WitnessError) {
        let fd = Glibc.open(directory + "/lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0, flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            throw .state("another witness run holds \(directory) (or its lock file cannot be opened)")
        }
        // Deliberately left open: the lock lasts as long as the process.
    }

    /// The checkpoint in `note` if `verifier` signed it.
    public func open(_ note: String) throws(WitnessError) -> Checkpoint {
        do {
            return try Checkpoint(text: SignedNote.open(note, verifiers: [verifier]).text)
        } catch {
            throw .badSignature("\(error)")
        }
    }

    /// Checks `note` (the log's newest head) against the last head held. `consistency` is asked for only when the log
    /// grew: it must return the proof from the held size to the new one.
    /// - Returns: the new checkpoint and whether it advanced past the held one.
    public func check(
        _ note: String, consistency: (_ from: UInt64, _ to: UInt64) async throws -> [[UInt8]]
    ) async throws(WitnessError) -> (Checkpoint, advanced: Bool) {
        let head = try open(note)
        guard head.origin == verifier.name else { throw .badSignature("the head names origin \(head.origin), not \(verifier.name)") }
        guard let (_, held) = try latest() else { return (head, true) }
        if head.size < held.size {
            throw .wentBackwards(held: held.size, served: head.size)
        }
        if head.size == held.size {
            guard head.rootHash == held.rootHash else { throw .fork(size: head.size) }
            return (head, false)
        }
        let proof: [[UInt8]]
        do {
            proof = try await consistency(held.size, head.size)
            try? FileManager.default.removeItem(atPath: directory + "/pending")
        } catch {
            // A log that signs a larger head and will not prove that it extends the held one is hiding something:
            // the head is kept, and after a few refusals that is reported as misbehaviour, not as a network error.
            let tries = notePending(note, size: head.size)
            if tries >= Self.proofAttempts { throw .unproven(from: held.size, to: head.size, attempts: tries) }
            throw .unreachable("consistency proof \(held.size)→\(head.size) (attempt \(tries) of \(Self.proofAttempts)): \(error)")
        }
        do {
            try Merkle.verifyConsistency(size1: held.size, size2: head.size, root1: held.rootHash, root2: head.rootHash, proof: proof)
        } catch {
            throw .inconsistent(from: held.size, to: head.size, "\(error)")
        }
        return (head, true)
    }

    /// Consistency proofs a log may refuse for one larger signed head before the witness calls it misbehaviour.
    public static let proofAttempts = 3

    /// Keeps a signed head whose proof did not come, and counts the attempts; returns the count.
    private func notePending(_ note: String, size: UInt64) -> Int {
        let dir = directory + "/pending"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try? Self.writeDurably(note, to: dir + "/\(size).note", directory: dir)
        let counter = dir + "/\(size).attempts"
        let tries = (Int((try? String(contentsOfFile: counter, encoding: .utf8)) ?? "") ?? 0) + 1
        try? Self.writeDurably(String(tries), to: counter, directory: dir)
        return tries
    }

    /// Keeps `note` as the newest head, never replacing a larger one; each file is written, fsynced and renamed into
    /// place, then the directory fsynced, so that a crash or a power cut leaves the old head or the new one.
    public func record(_ note: String, size: UInt64) throws(WitnessError) {
        if let held = try latest(), held.checkpoint.size > size { return }
        do {
            try Self.writeDurably(note, to: directory + "/heads/\(size).note", directory: directory + "/heads")
            try Self.writeDurably(note, to: directory + "/latest.note", directory: directory)
        } catch {
            throw .state("cannot write to \(directory): \(error)")
        }
    }

    private static func writeDurably(_ text: String, to path: String, directory: String) throws {
        let temporary = path + ".tmp"
        let fd = Glibc.open(temporary, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CocoaError(.fileWriteNoPermission) }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == bytes.count, synced == 0, rename(temporary, path) == 0 else { throw CocoaError(.fileWriteUnknown) }
        let dirFD = Glibc.open(directory, O_RDONLY | O_CLOEXEC)
        if dirFD >= 0 { _ = fsync(dirFD); close(dirFD) }
    }
}

/// Why a witness refused a log's head, or could not check it.
public enum WitnessError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not signed by the log's key (or not a checkpoint).
    case badSignature(String)
    /// The log shows fewer entries than a head it signed before: it was cut.
    case wentBackwards(held: UInt64, served: UInt64)
    /// Two different roots for one size: the log was rewritten, or shows different histories to different viewers.
    case fork(size: UInt64)
    /// The new head does not extend the held one.
    case inconsistent(from: UInt64, to: UInt64, String)
    /// The log signed a larger head but did not prove, in several attempts, that it extends the held one.
    case unproven(from: UInt64, to: UInt64, attempts: Int)
    /// The log could not be asked (network, status); says nothing about its honesty.
    case unreachable(String)
    /// The witness's own state directory.
    case state(String)

    /// True for the verdicts that mean the log misbehaved, as opposed to the witness failing to ask it.
    public var isMisbehaviour: Bool {
        switch self {
        case .badSignature, .wentBackwards, .fork, .inconsistent, .unproven: true
        case .unreachable, .state: false
        }
    }

    public var description: String {
        switch self {
        case let .badSignature(why): "the head is not signed by the log's key: \(why)"
        case let .wentBackwards(held, served): "the log went backwards: it signed a head of \(held) entries before and now serves one of \(served)"
        case let .fork(size): "fork: the log signed two different heads of size \(size)"
        case let .inconsistent(from, to, why): "the head of size \(to) does not extend the held head of size \(from): \(why)"
        case let .unproven(from, to, attempts):
            "the log signed a head of size \(to) but refused \(attempts) times to prove that it extends the held head of size \(from) (kept in pending/)"
        case let .unreachable(why): "could not ask the log: \(why)"
        case let .state(why): why
        }
    }
}
