// A copy-on-write B+tree of fixed-size keys and values over the pager. Inserts split full
// nodes on the way down, so a split never propagates upward; removes drop emptied nodes and
// collapse a root with a single child. Nothing is ever modified in place on disk: every node
// on a modified path is shadowed first (Pager.shadow).

final class Tree<Device: BlockDevice> {
    let kind: TreeKind
    unowned let pager: Pager<Device>
    var root: TreeRoot
    /// Upserts and removes so far: the commit tells from it whether anything but logged
    /// copy-outs changed the tree since the last commit.
    private(set) var mutations = 0

    init(kind: TreeKind, pager: Pager<Device>, root: TreeRoot) {
        self.kind = kind
        self.pager = pager
        self.root = root
    }

    var count: UInt64 { root.count }
    private var leafStride: Int { kind.valueWords }

    private func capacity(_ n: Node) -> Int { Node.capacity(blockSize: pager.blockSize, stride: n.stride) }

    private func load(_ address: UInt64, level: Int) throws -> Node {
        try pager.node(address, kind: kind, level: UInt8(level))
    }

    /// The path from the root to the leaf that covers `key`: (node, child index) per level;
    /// the leaf's entry carries the lower-bound position of `key`.
    private func descend(_ key: Key) throws -> [(node: Node, index: Int)] {
        var path: [(node: Node, index: Int)] = []
        guard root.height > 0 else { return path }
        var n = try load(root.root, level: Int(root.height) - 1)
        while !n.isLeaf {
            let i = n.childIndex(for: key)
            path.append((n, i))
            n = try load(n.words[i], level: Int(n.level) - 1)
        }
        path.append((n, n.lowerBound(key)))
        return path
    }

    // MARK: Lookups

    /// The first value word stored under exactly `key`.
    func find(_ key: Key) throws -> UInt64? {
        try values(key)?.first
    }

    /// Smallest key >= `key`, with its first value word.
    func ceiling(_ key: Key) throws -> (key: Key, value: UInt64)? {
        var found: (Key, UInt64)?
        try scan(from: key) { k, n, i in
            found = (k, n.value(i))
            return false
        }
        return found
    }

    /// Largest key <= `key`, with its first value word.
    func floor(_ key: Key) throws -> (key: Key, value: UInt64)? {
        var path = try descend(key)
        guard !path.isEmpty else { return nil }
        let leaf = path[path.count - 1]
        // Position of the last key <= key in the leaf.
        var i = leaf.index
        if i < leaf.node.count && leaf.node.keys[i] == key { return (key, leaf.node.value(i)) }
        i -= 1
        if i >= 0 { return (leaf.node.keys[i], leaf.node.value(i)) }
        // Everything in this leaf is larger: the answer is the last entry of the previous leaf.
        path.removeLast()
        while let top = path.last {
            if top.index > 0 {
                var n = try load(top.node.words[top.index - 1], level: Int(top.node.level) - 1)
                while !n.isLeaf { n = try load(n.words[n.count - 1], level: Int(n.level) - 1) }
                return (n.keys[n.count - 1], n.value(n.count - 1))
            }
            path.removeLast()
        }
        return nil
    }

    /// Visits entries in key order from the first key >= `from`; the visitor gets the key,
    /// the leaf and the entry index, and returns false to stop. The tree must not be
    /// modified during a scan.
    func scan(from: Key, _ visit: (Key, Node, Int) throws -> Bool) throws {
        var path = try descend(from)
        guard !path.isEmpty else { return }
        var (leaf, i) = path.removeLast()
        while true {
            while i < leaf.count {
                if try !visit(leaf.keys[i], leaf, i) { return }
                i += 1
            }
            // Next leaf: climb to the first ancestor with a right sibling, then go leftmost.
            var next: Node?
            while let top = path.popLast() {
                if top.index + 1 < top.node.count {
                    path.append((top.node, top.index + 1))
                    var n = try load(top.node.words[top.index + 1], level: Int(top.node.level) - 1)
                    while !n.isLeaf {
                        path.append((n, 0))
                        n = try load(n.words[0], level: Int(n.level) - 1)
                    }
                    next = n
                    break
                }
            }
            guard let n = next else { return }
            leaf = n
            i = 0
        }
    }

    /// Visits entries in descending key order from the last key <= `from`; like `scan`
    /// otherwise.
    func scanBackward(from: Key, _ visit: (Key, Node, Int) throws -> Bool) throws {
        var path = try descend(from)
        guard !path.isEmpty else { return }
        var (leaf, i) = path.removeLast()
        if !(i < leaf.count && leaf.keys[i] == from) { i -= 1 }
        while true {
            while i >= 0 {
                if try !visit(leaf.keys[i], leaf, i) { return }
                i -= 1
            }
            // Previous leaf: climb to the first ancestor with a left sibling, then go rightmost.
            var previous: Node?
            while let top = path.popLast() {
                if top.index > 0 {
                    path.append((top.node, top.index - 1))
                    var n = try load(top.node.words[top.index - 1], level: Int(top.node.level) - 1)
                    while !n.isLeaf {
                        path.append((n, n.count - 1))
                        n = try load(n.words[n.count - 1], level: Int(n.level) - 1)
                    }
                    previous = n
                    break
                }
            }
            guard let n = previous else { return }
            leaf = n
            i = n.count - 1
        }
    }

    /// All value words stored under exactly `key` (snapshot records).
    func values(_ key: Key) throws -> ArraySlice<UInt64>? {
        let path = try descend(key)
        guard let leaf = path.last, leaf.index < leaf.node.count, leaf.node.keys[leaf.index] == key else { return nil }
        return leaf.node.values(leaf.index)
    }

    // MARK: Updates

    /// Inserts or replaces the entry for `key`.
    func upsert(_ key: Key, _ value: [UInt64]) throws {
        precondition(value.count == leafStride)
        mutations += 1
        if root.height == 0 {
            let leaf = try pager.makeNode(kind: kind, level: 0)
            leaf.keys = [key]
            leaf.words = value
            root = TreeRoot(root: leaf.address, height: 1, count: 1)
            return
        }
        var n = try pager.shadow(try load(root.root, level: Int(root.height) - 1))
        root.root = n.address
        if n.count >= capacity(n) {
            let top = try pager.makeNode(kind: kind, level: n.level + 1)
            let (right, separator) = try split(n)
            top.keys = [n.keys[0], separator]
            top.words = [n.address, right.address]
            root.root = top.address
            root.height += 1
            n = top
        }
        while !n.isLeaf {
            let i = n.childIndex(for: key)
            // key[0] of an internal node is a lower bound of its first child: a smaller key
            // going there lowers it, so that every key of a node stays strictly increasing
            // when the first child later splits (docs/FORMAT.md "Tree node", INVARIANTS I2).
            if i == 0 && key < n.keys[0] { n.keys[0] = key }
            var child = try pager.shadow(try load(n.words[i], level: Int(n.level) - 1))
            n.words[i] = child.address
            if child.count >= capacity(child) {
                let (right, separator) = try split(child)
                n.keys.insert(separator, at: i + 1)
                n.words.insert(right.address, at: i + 1)
                if key >= separator { child = right }
            }
            n = child
        }
        let i = n.lowerBound(key)
        let s = leafStride
        if i < n.count && n.keys[i] == key {
            n.words.replaceSubrange((i * s)..<((i + 1) * s), with: value)
        } else {
            n.keys.insert(key, at: i)
            n.words.insert(contentsOf: value, at: i * s)
            root.count += 1
        }
    }

    func upsert(_ key: Key, _ value: UInt64) throws { try upsert(key, [value]) }

    /// Moves the upper half of writable node `n` into a new right sibling.
    private func split(_ n: Node) throws -> (right: Node, separator: Key) {
        let right = try pager.makeNode(kind: kind, level: n.level)
        let half = n.count / 2
        let s = n.stride
        right.keys = Array(n.keys[half...])
        right.words = Array(n.words[(half * s)...])
        n.keys.removeSubrange(half...)
        n.words.removeSubrange((half * s)...)
        return (right, right.keys[0])
    }

    /// Removes the entry for `key`; returns whether it was there.
    @discardableResult
    func remove(_ key: Key) throws -> Bool {
        let path = try descend(key)
        guard let leaf = path.last, leaf.index < leaf.node.count, leaf.node.keys[leaf.index] == key else { return false }
        mutations += 1
        // Shadow the whole path top-down, fixing each parent's pointer.
        var nodes: [Node] = []
        for (depth, step) in path.enumerated() {
            let n = try pager.shadow(step.node)
            if depth == 0 { root.root = n.address } else { nodes[depth - 1].words[path[depth - 1].index] = n.address }
            nodes.append(n)
        }
        let s = leafStride
        let leafNode = nodes[nodes.count - 1]
        leafNode.keys.remove(at: leaf.index)
        leafNode.words.removeSubrange((leaf.index * s)..<((leaf.index + 1) * s))
        root.count -= 1
        // Drop emptied nodes bottom-up.
        var depth = nodes.count - 1
        while depth > 0 && nodes[depth].count == 0 {
            pager.release(nodes[depth])
            let parent = nodes[depth - 1]
            parent.keys.remove(at: path[depth - 1].index)
            parent.words.remove(at: path[depth - 1].index)
            depth -= 1
        }
        if nodes[0].count == 0 {
            pager.release(nodes[0])
            root = TreeRoot()
            return true
        }
        // Collapse a root that has a single child.
        var top = nodes[0]
        while !top.isLeaf && top.count == 1 {
            let child = try load(top.words[0], level: Int(top.level) - 1)
            pager.release(top)
            root.root = child.address
            root.height -= 1
            top = child
        }
        return true
    }

    /// Visits every node (for check): the node, its depth, and the key range it must respect.
    func walk(_ visit: (Node, _ low: Key?, _ high: Key?) throws -> Void) throws {
        guard root.height > 0 else { return }
        func recurse(_ address: UInt64, level: Int, low: Key?, high: Key?) throws {
            let n = try load(address, level: level)
            try visit(n, low, high)
            if n.isLeaf { return }
            for i in 0..<n.count {
                let childLow = i == 0 ? low : n.keys[i]
                let childHigh = i + 1 < n.count ? n.keys[i + 1] : high
                try recurse(n.words[i], level: level - 1, low: childLow, high: childHigh)
            }
        }
        try recurse(root.root, level: Int(root.height) - 1, low: nil, high: nil)
    }
}
