// What `ddsnap status` reports about a store as a whole.

public struct StoreStatus: Equatable, Sendable, Codable {
    public var chunkSizeBytes: Int
    public var storeChunks: UInt64
    public var freeChunks: UInt64
    public var originSizeBytes: UInt64
    public var originPath: String
    public var volumeUUID: String
    public var snapshotCount: Int
    public var squashedCount: Int
    public var exceptionCount: UInt64
    public var privateChunkCount: UInt64
    public var metadataChunks: UInt64
    public var sequence: UInt64
    public var warnFillPercent: Int
    public var usedChunks: UInt64 { storeChunks - freeChunks }
    public var percentUsed: Int { Int(usedChunks * 100 / max(storeChunks, 1)) }
}

extension Store {
    public var status: StoreStatus {
        let data = exceptionsByChunk.count + privateChunks.count
        let used = space.chunkCount - space.freeCount
        return StoreStatus(
            chunkSizeBytes: chunkSizeBytes, storeChunks: space.chunkCount, freeChunks: space.freeCount,
            originSizeBytes: superblock.originSizeBytes, originPath: superblock.originPath,
            volumeUUID: formatUUID(superblock.volumeUUID),
            snapshotCount: recordCount(.normal) + recordCount(.squashed),
            squashedCount: recordCount(.squashed),
            exceptionCount: exceptionsByChunk.count, privateChunkCount: privateChunks.count,
            metadataChunks: used >= data ? used - data : 0, sequence: superblock.sequence,
            warnFillPercent: Int(superblock.warnFillPercent))
    }

    /// The fill level (percent) at which a warning is raised.
    public func setWarnFillPercent(_ percent: Int) throws {
        guard (1...100).contains(percent) else { throw StoreError.invalidArgument("warning level \(percent)% must be within 1...100") }
        try mutate {
            superblock.warnFillPercent = UInt32(percent)
            superblockDirty = true
            try commit()
        }
    }
}

extension Store {
    /// Takes `uuid` as this store's volume UUID: a replica store becomes a replica of the
    /// volume whose full stream it receives. Only while the store holds no snapshot.
    public func adoptVolumeUUID(_ uuid: [UInt8]) throws {
        guard uuid.count == 16 else { throw StoreError.invalidArgument("a volume UUID has 16 bytes") }
        if uuid == superblock.volumeUUID { return }
        guard snapshotTree.count == 0 else {
            throw StoreError.invalidArgument("the store holds snapshots of volume \(formatUUID(superblock.volumeUUID)); it cannot become a replica of \(formatUUID(uuid))")
        }
        try mutate {
            superblock.volumeUUID = uuid
            superblockDirty = true
            try commit()
        }
    }
}
