import PackagePlugin

/// Compiles the target's web files (`.js`, `.css`, `.mustache`) into the binary: for each, a Swift file with its bytes
/// (`Embedded.<name>_<extension>`), so that a copied `veil` serves the tracking script and the console without a
/// resource directory beside it.
@main
struct EmbedScript: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        guard let target = target as? any SourceModuleTarget else { return [] }
        let tool = try context.tool(named: "EmbedFile")
        let files = ["js", "css", "mustache"].flatMap { target.sourceFiles(withSuffix: $0) }
        return files.map { file in
            let name = file.url.deletingPathExtension().lastPathComponent + "_" + file.url.pathExtension
            let output = context.pluginWorkDirectoryURL.appending(path: "Embedded_\(name).swift")
            return .buildCommand(
                displayName: "Embedding \(file.url.lastPathComponent)", executable: tool.url,
                arguments: [file.url.path, output.path, name], inputFiles: [file.url], outputFiles: [output])
        }
    }
}
