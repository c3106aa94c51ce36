import PackagePlugin

/// Compiles the target's `.js` files into the binary: for each, a Swift file with its bytes, so that a copied `veil`
/// serves the tracking script without a resource directory beside it.
@main
struct EmbedScript: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        guard let target = target as? any SourceModuleTarget else { return [] }
        let tool = try context.tool(named: "EmbedFile")
        return target.sourceFiles(withSuffix: "js").map { file in
            let name = file.url.deletingPathExtension().lastPathComponent
            let output = context.pluginWorkDirectoryURL.appending(path: "Embedded_\(name).swift")
            return .buildCommand(
                displayName: "Embedding \(file.url.lastPathComponent)", executable: tool.url,
                arguments: [file.url.path, output.path, name], inputFiles: [file.url], outputFiles: [output])
        }
    }
}
