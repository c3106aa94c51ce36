import Foundation
import Recommender
import Synchronization

/// Shows a long command's progress on standard error: on a terminal one line that keeps being redrawn (task, phase,
/// steps done, elapsed, an estimate of the phase's remainder), otherwise nothing until the one summary line of
/// ``finish(_:)``. Standard output keeps only the command's report.
final class TerminalProgress: Sendable {
    private struct State {
        var key = ""
        var phaseStarted = ContinuousClock.now
        var phases = 0
        var lastDrawn: ContinuousClock.Instant?
    }

    let command: String
    let interactive: Bool
    private let started = ContinuousClock.now
    private let state = Mutex(State())

    init(_ command: String, interactive: Bool = isatty(STDERR_FILENO) == 1) {
        self.command = command
        self.interactive = interactive
    }

    var reporter: ProgressReporter { ProgressReporter { [self] update in show(update) } }

    func show(_ update: ProgressReporter.Update) {
        let line = state.withLock { s -> String? in
            let now = ContinuousClock.now
            let key = update.task + " · " + update.phase
            if key != s.key {
                s.key = key
                s.phaseStarted = now
                s.phases += 1
            }
            guard interactive else { return nil }
            // At most ten redraws a second; a phase's last step is always shown.
            if let last = s.lastDrawn, now - last < .milliseconds(100), update.done < update.total { return nil }
            s.lastDrawn = now
            var line = "\(command): \(key)"
            if update.total > 0 { line += " \(update.done)/\(update.total)" }
            line += " · " + Self.format(now - started)
            if update.total > 0, update.done > 0, update.done < update.total {
                let perStep = (now - s.phaseStarted) / update.done
                line += " · about " + Self.format(perStep * (update.total - update.done)) + " left in this phase"
            }
            return line
        }
        if let line { Self.write("\r\u{1B}[K" + line) }
    }

    /// Clears the progress line and writes one summary line (`what` says what was done).
    func finish(_ what: String) {
        let phases = state.withLock { $0.phases }
        if interactive { Self.write("\r\u{1B}[K") }
        Self.write("\(command): \(what) in \(Self.format(.now - started))\(phases > 0 ? " (\(phases) phases)" : "")\n")
    }

    static func format(_ d: Duration) -> String {
        let seconds = d.seconds
        return seconds < 60 ? String(format: "%.1f s", seconds) : String(format: "%d min %02d s", Int(seconds) / 60, Int(seconds) % 60)
    }

    private static func write(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }
}
