import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Runs a program and waits for it, its standard output and error written to files and read once it has exited (no
/// pipe to fill and block on). Foundation's `Process` is not used: on Linux its `run()` copies each `/proc/self/fd`
/// entry's whole 256-byte name field and now and then reads past the end of a mapped page (swift-corelibs-foundation
/// pull request 5472); it took down a whole test run with a segmentation fault.
public enum Spawn {
    /// The exit status (128 + the signal for a program killed by one), standard output and standard error of `path`
    /// run with `arguments` (standard input: /dev/null).
    public static func run(_ path: String, _ arguments: [String]) throws -> (status: Int32, output: Data, error: Data) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("veil-spawn-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let out = directory + "/out", err = directory + "/err"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, nil, argv, environ)
        guard spawned == 0 else { throw POSIXError(POSIXErrorCode(rawValue: spawned) ?? .EIO) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .ECHILD) }
        }
        // WIFEXITED and WEXITSTATUS are macros Swift does not import.
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (code, FileManager.default.contents(atPath: out) ?? Data(), FileManager.default.contents(atPath: err) ?? Data())
    }
}
