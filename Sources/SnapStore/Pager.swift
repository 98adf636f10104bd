// The node cache and copy-on-write shadowing. Clean nodes are cached up to a configured
// number (least recently used go first); dirty nodes stay in memory until the commit writes
// them. A node is writable in a transaction only once it has a fresh address allocated in that
// transaction ("shadowed"): the committed tree is never modified in place.

final class Pager<Device: BlockDevice> {
    let device: Device
    let blockSize: Int
    let space: SpaceMap
    /// The sequence of the last durable commit; blocks written now carry `committed + 1`.
    var committedSequence: UInt64
    private var nodes: [UInt64: Node] = [:]
    private(set) var dirty: [UInt64: Node] = [:]
    let cacheNodesMax: Int
    /// Nodes in memory now, clean and dirty.
    var cachedNodeCount: Int { nodes.count }
    private var tick: UInt64 = 0
    private var buffer: [UInt8]

    init(device: Device, blockSize: Int, space: SpaceMap, committedSequence: UInt64, cacheBytes: Int) {
        self.device = device
        self.blockSize = blockSize
        self.space = space
        self.committedSequence = committedSequence
        // A decoded node costs about its block size again in arrays and headers.
        cacheNodesMax = max(64, cacheBytes / (blockSize + blockSize / 4))
        buffer = [UInt8](repeating: 0, count: blockSize)
    }

    /// Loads and verifies a node (cached).
    func node(_ address: UInt64, kind: TreeKind, level: UInt8?) throws -> Node {
        tick &+= 1
        if let n = nodes[address] {
            // A damaged tree may point twice at one block: as read, the cached node was checked
            // for where it was first reached, so check it for this place too.
            guard n.kind == kind, level == nil || n.level == level else {
                throw StoreError.corrupt("\(kind.name) tree points at block \(address), which holds a \(n.kind.name) node at level \(n.level)")
            }
            n.lastUse = tick
            return n
        }
        guard address >= UInt64(Format.superblockSlots.count), address < space.chunkCount else {
            throw StoreError.corrupt("\(kind.name) tree points at block \(address), outside the store (\(space.chunkCount) chunks)")
        }
        try device.read(into: &buffer, at: address * UInt64(blockSize))
        let n = try buffer.withUnsafeBytes {
            try Node.decode($0, address: address, expectKind: kind, expectLevel: level, maxSequence: committedSequence)
        }
        n.lastUse = tick
        nodes[address] = n
        if nodes.count - dirty.count > cacheNodesMax { evict() }
        return n
    }

    /// Drops the least recently used clean nodes: down to seven eighths of the budget, so
    /// the clean cache never exceeds it and the sort runs once per many loads.
    private func evict() {
        var clean = nodes.values.filter { dirty[$0.address] == nil }
        let excess = clean.count - cacheNodesMax * 7 / 8
        guard excess > 0 else { return }
        clean.sort { $0.lastUse < $1.lastUse }
        for n in clean.prefix(excess) { nodes[n.address] = nil }
    }

    /// A new empty node at a fresh address.
    func makeNode(kind: TreeKind, level: UInt8) throws -> Node {
        let n = Node(address: try space.allocate(), kind: kind, level: level)
        nodes[n.address] = n
        dirty[n.address] = n
        return n
    }

    /// Makes `n` writable in this transaction: moves it to a fresh address (freeing the old
    /// one, pinned until commit) unless it already has one. Callers update the parent pointer.
    func shadow(_ n: Node) throws -> Node {
        if dirty[n.address] != nil { return n }
        let fresh = try space.allocate()
        nodes[n.address] = nil
        space.free(n.address, bookkeeping: true)
        n.address = fresh
        nodes[fresh] = n
        dirty[fresh] = n
        return n
    }

    /// Gives a node's block back (the node left the tree).
    func release(_ n: Node) {
        nodes[n.address] = nil
        dirty[n.address] = nil
        space.free(n.address)
    }

    /// Writes every dirty node (sorted by address) with `sequence`, showing each block's
    /// bytes to `written`; the caller syncs.
    func writeDirty(sequence: UInt64, written: (UInt64, UnsafeRawBufferPointer) -> Void) throws {
        for address in dirty.keys.sorted() {
            let n = dirty[address]!
            buffer.withUnsafeMutableBytes { n.encode(into: $0, sequence: sequence) }
            try device.write(buffer, at: address * UInt64(blockSize))
            buffer.withUnsafeBytes { written(address, $0) }
        }
    }

    /// The commit wrote every dirty node: they are clean now, and count against the budget
    /// (nodes that splits made were never loaded, so no load would have evicted for them).
    func committed() {
        dirty.removeAll(keepingCapacity: true)
        if nodes.count > cacheNodesMax { evict() }
    }

    /// Forgets everything cached (after an aborted transaction).
    func reset() {
        nodes.removeAll()
        dirty.removeAll()
    }
}
