extension Embedded {
    /// The console's templates by name (the files in `console/`, compiled in).
    static var consoleTemplates: [(String, [UInt8])] {
        [
            ("top", top_mustache), ("bottom", bottom_mustache), ("signin", signin_mustache), ("error", error_mustache),
            ("audit", audit_mustache), ("entry", entry_mustache), ("integrity", integrity_mustache), ("subject", subject_mustache),
            ("result", result_mustache), ("operations", operations_mustache),
        ]
    }
}
