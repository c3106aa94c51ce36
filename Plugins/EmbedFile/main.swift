import Foundation

// EmbedFile INPUT OUTPUT NAME: writes OUTPUT, a Swift file declaring `enum Embedded { static let NAME: [UInt8] }` with
// INPUT's bytes (the build tool of the EmbedScript plugin).
let arguments = CommandLine.arguments
guard arguments.count == 4, let data = FileManager.default.contents(atPath: arguments[1]) else {
    FileHandle.standardError.write(Data("usage: EmbedFile INPUT OUTPUT NAME (INPUT must be readable)\n".utf8))
    exit(2)
}
let name = arguments[3].map { $0.isLetter || $0.isNumber ? $0 : "_" }.reduce(into: "") { $0.append($1) }
var text = "// Generated from \((arguments[1] as NSString).lastPathComponent) by the EmbedScript plugin; do not edit.\n"
text += "extension Embedded {\n    static let \(name): [UInt8] = [\n"
let bytes = [UInt8](data)
for start in stride(from: 0, to: bytes.count, by: 24) {
    text += "        " + bytes[start..<min(start + 24, bytes.count)].map { String($0) }.joined(separator: ", ") + ",\n"
}
text += "    ]\n}\n"
try text.write(toFile: arguments[2], atomically: true, encoding: .utf8)
