// `ddsnap`: the low-level tool. Each subcommand parses and validates its arguments, calls one
// SnapStore operation on the devices, and prints the result. Errors print one clear line
// on stderr and exit non-zero; nothing is changed when an argument is wrong.

import ArgumentParser
import Foundation
import Replication
import SnapStore
import Transport
import VolumeServer
import VolumeInterface

@main
struct DDSnap: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ddsnap",
        abstract: "Low-level snapshot store tool: initialize, snapshot, read and write volumes and snapshots.",
        discussion: """
            STORE is the snapshot store (file or block device); it records its origin's path, \
            which --origin overrides. While `ddsnap server` serves a store, give its control socket \
            instead of the store. Tags are snapshot numbers. Sizes take K, M, G or T suffixes \
            (powers of 1024).
            """,
        version: ControlProtocol.release,
        subcommands: [
            Initialize.self, Create.self, Delete.self, List.self, Status.self, Usecount.self,
            Priority.self, Read.self, Write.self, Changelist.self, Revert.self, Resize.self, Check.self,
            Server.self, Attach.self, Detach.self, Devices.self, Delta.self,
        ])

    /// Two spellings ArgumentParser cannot express directly: a bare `status --size` (meaning
    /// all snapshots), and the signed numbers of `usecount` and `priority`, which it would read
    /// as options, so the end of options is marked before them.
    static func preprocess(_ arguments: [String]) -> [String] {
        var out = arguments
        if out.first == "status", let i = out.firstIndex(of: "--size"), i + 1 == out.count || out[i + 1].hasPrefix("-") {
            out.insert("all", at: i + 1)
        }
        guard let verb = out.first, verb == "usecount" || verb == "priority", !out.contains("--") else {
            return out
        }
        if let i = out.lastIndex(where: { $0.count > 1 && $0.hasPrefix("-") && Int($0) != nil }) {
            out.insert("--", at: i)
        }
        return out
    }

    static func main() {
        let arguments = preprocess(Array(CommandLine.arguments.dropFirst()))
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch let error as StoreError {
            printError("ddsnap: \(error)")
            Foundation.exit(1)
        } catch let error as VolumeError {
            printError("ddsnap: \(error)")
            Foundation.exit(1)
        } catch let error as DeltaError {
            printError("ddsnap: \(error)")
            Foundation.exit(1)
        } catch let error as TransportError {
            printError("ddsnap: \(error)")
            Foundation.exit(1)
        } catch let exit as ExitCode {
            Foundation.exit(exit.rawValue)
        } catch {
            self.exit(withError: error)
        }
    }
}
