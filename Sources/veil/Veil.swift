import ArgumentParser

@main
struct Veil: AsyncParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "veil",
        abstract: "Veil: a consent-first personalization gateway.",
        version: version,
        subcommands: [KeysCommand.self, EvaluateCommand.self, DemoCommand.self]
    )
}
