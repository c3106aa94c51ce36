import ArgumentParser
import Gateway
import VeilCore
import Logging

@main
struct Veil: AsyncParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "veil",
        abstract: "Veil: a consent-first personalization gateway.",
        version: version,
        subcommands: [
            DemoCommand.self, ServeCommand.self, KeysCommand.self, PrincipalsCommand.self, PolicyCommand.self, ConsentCommand.self,
            AuditCommand.self, TrainCommand.self, ModelCommand.self, EvaluateCommand.self, SampleCommand.self, ImportCommand.self,
            QualityCommand.self, SegmentsCommand.self, ExperimentsCommand.self, RetentionCommand.self, LinkCommand.self, BenchCommand.self,
            SDKCommand.self, StorageCommand.self,
        ]
    )

    /// Logs are JSON lines on standard error for every command.
    static func main() async {
        LoggingSystem.bootstrap { JSONLogHandler(label: $0) }
        await main(nil)
    }
}
