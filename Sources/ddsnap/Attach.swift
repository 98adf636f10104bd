import ArgumentParser
import SnapStore
import VolumeServer

struct Attach: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attach",
        abstract: "Attach a loop device to the origin or snapshot TAG and print its path.",
        discussion: "The device is also named /dev/mapper/VOL (the origin) or /dev/mapper/VOL(TAG). Snapshots attach read-only unless --writable.")

    @Argument(help: "The server's control socket.") var socket: String
    @Argument(help: "A snapshot tag (default: the origin).", transform: parseTag) var tag: UInt64?
    @Flag(help: "Attach a snapshot read-write.") var writable = false

    func run() throws {
        let device = try ControlClient(socketPath: socket).attach(tag: tag, writable: writable)
        print(device.name)
        printError("\(device.name) -> \(device.loopDevice)\(device.writable ? "" : " (read-only)")\(device.directIO ? "" : " (buffered: the block file refused direct I/O)")")
    }
}

struct Detach: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detach",
        abstract: "Detach the loop device of the origin or snapshot TAG.",
        discussion: "A device still mounted goes away when it is unmounted.")

    @Argument(help: "The server's control socket.") var socket: String
    @Argument(help: "A snapshot tag (default: the origin).", transform: parseTag) var tag: UInt64?

    func run() throws {
        let device = try ControlClient(socketPath: socket).detach(tag: tag)
        print("detached \(device.name) (\(device.loopDevice))")
    }
}

struct Devices: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "devices", abstract: "List the devices a server has attached.")

    @Argument(help: "The server's control socket.") var socket: String
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let devices = try ControlClient(socketPath: socket).devices()
        if json {
            try printJSON(devices.map { d -> [String: Any] in
                var o: [String: Any] = ["name": d.name, "loopDevice": d.loopDevice, "writable": d.writable, "directIO": d.directIO]
                o["tag"] = d.tag.map { $0 as Any } ?? "origin"
                return o
            })
            return
        }
        for d in devices {
            print("\(d.name) \(d.loopDevice) \(d.writable ? "rw" : "ro")")
        }
    }
}
