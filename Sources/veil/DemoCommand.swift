import ArgumentParser

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "demo", abstract: "Run Veil end to end on generated sample data.")
    func run() throws { print("demo: being written") }
}
