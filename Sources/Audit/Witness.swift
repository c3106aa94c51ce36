import Foundation
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
        try FileManager.default.createDirectory(atPath: directory + "/heads", withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
    }

    /// The newest head seen and accepted, if any.
    public func latest() throws(WitnessError) -> (note: String, checkpoint: Checkpoint)? {
        let path = directory + "/latest.note"
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let note = try? String(contentsOfFile: path, encoding: .utf8) else { throw .state("cannot read \(path)") }
        do {
            return (note, try open(note))
        } catch {
            throw .state("\(path) is not a head signed by \(verifier.name): \(error)")
        }
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
    public func check(_ note: String, consistency: (_ from: UInt64, _ to: UInt64) async throws -> [[UInt8]]) async throws(WitnessError) -> (Checkpoint, advanced: Bool) {
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
        } catch {
            throw .unreachable("consistency proof \(held.size)→\(head.size): \(error)")
        }
        do {
            try Merkle.verifyConsistency(size1: held.size, size2: head.size, root1: held.rootHash, root2: head.rootHash, proof: proof)
        } catch {
            throw .inconsistent(from: held.size, to: head.size, "\(error)")
        }
        return (head, true)
    }

    /// Keeps `note` as the newest head (written to a temporary file and renamed, so a crash leaves the old or the new).
    public func record(_ note: String, size: UInt64) throws(WitnessError) {
        do {
            try Data(note.utf8).write(to: URL(fileURLWithPath: directory + "/heads/\(size).note"), options: .atomic)
            try Data(note.utf8).write(to: URL(fileURLWithPath: directory + "/latest.note"), options: .atomic)
        } catch {
            throw .state("cannot write to \(directory): \(error)")
        }
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
    /// The log could not be asked (network, status); says nothing about its honesty.
    case unreachable(String)
    /// The witness's own state directory.
    case state(String)

    /// True for the verdicts that mean the log misbehaved, as opposed to the witness failing to ask it.
    public var isMisbehaviour: Bool {
        switch self {
        case .badSignature, .wentBackwards, .fork, .inconsistent: true
        case .unreachable, .state: false
        }
    }

    public var description: String {
        switch self {
        case let .badSignature(why): "the head is not signed by the log's key: \(why)"
        case let .wentBackwards(held, served): "the log went backwards: it signed a head of \(held) entries before and now serves one of \(served)"
        case let .fork(size): "fork: the log signed two different heads of size \(size)"
        case let .inconsistent(from, to, why): "the head of size \(to) does not extend the held head of size \(from): \(why)"
        case let .unreachable(why): "could not ask the log: \(why)"
        case let .state(why): why
        }
    }
}
