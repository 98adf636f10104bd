// Every metric zumastor exports, with its meaning: the HELP lines of /metrics, and the list
// docs/OPERATIONS.md must cover (a test holds the two together). Names follow Prometheus'
// conventions: base units (seconds, bytes), `_total` for counters.

public enum MetricCatalog {
    /// Buckets of the latency histograms: 50 µs to 10 s.
    public static let latencyBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
        .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .seconds(2.5), .seconds(10),
    ]

    /// What a volume's server counts (`ddsnap server`), labelled `volume`; I/O figures also
    /// `device` (`origin` or `snapshot`).
    public static let server: [MetricDescription] = [
        MetricDescription("zumastor_reads_total", "Read requests served (block files, NBD, control socket), by device: origin or snapshot."),
        MetricDescription("zumastor_read_bytes_total", "Bytes read, by device: origin or snapshot."),
        MetricDescription("zumastor_writes_total", "Write requests completed (zeroing included), by device: origin or snapshot."),
        MetricDescription("zumastor_write_bytes_total", "Bytes written (zeroed ranges included), by device: origin or snapshot."),
        MetricDescription("zumastor_write_duration_seconds", "Time from a write's arrival at the server to its completion, copy-outs and the group commit included."),
        MetricDescription("zumastor_io_errors_total", "Requests that failed, by operation: read, write or flush."),
        MetricDescription("zumastor_flushes_total", "Flush requests (fsync of a block file, NBD flush, control-socket flush)."),
        MetricDescription("zumastor_commits_total", "Store commits made durable, by kind: checkpoint or log (a copy-out log commit)."),
        MetricDescription("zumastor_commit_duration_seconds", "Time a commit took, its device syncs included."),
        MetricDescription("zumastor_copyout_chunks_total", "Origin chunks copied into the store before their first overwrite since a snapshot."),
        MetricDescription("zumastor_store_full_events_total", "Snapshots the full store gave up, by action: deleted or squashed."),
        MetricDescription("zumastor_origin_size_bytes", "Size of the origin device."),
        MetricDescription("zumastor_chunk_size_bytes", "Chunk size of the snapshot store."),
        MetricDescription("zumastor_store_size_bytes", "Size of the snapshot store."),
        MetricDescription("zumastor_store_used_bytes", "Bytes of the snapshot store in use (snapshot data and metadata)."),
        MetricDescription("zumastor_store_used_percent", "Fill of the snapshot store, percent."),
        MetricDescription("zumastor_store_snapshot_chunks", "Store chunks holding snapshot data (copied-out and snapshot-private chunks)."),
        MetricDescription("zumastor_store_metadata_chunks", "Store chunks holding metadata (trees, bitmaps, superblocks)."),
        MetricDescription("zumastor_snapshots", "Snapshots the store holds, squashed ones included."),
        MetricDescription("zumastor_snapshots_squashed", "Squashed snapshots: given up by the full store while in use, unreadable until deleted."),
        MetricDescription("zumastor_server_start_time_seconds", "When the volume's server started, seconds since 1970."),
    ]

    /// What the host's exporter (`zumastor start`) adds from zumastor's own state, labelled
    /// `volume`; replication figures also `peer` (the other host) and `direction` (`target`:
    /// this host sends; `source`: it receives).
    public static let manager: [MetricDescription] = [
        MetricDescription("zumastor_volume_up", "1 when the volume's server runs and answers, else 0."),
        MetricDescription("zumastor_snapshots_by_kind", "Snapshots zumastor took, by kind (hourly, daily, ..., manual, replication)."),
        MetricDescription("zumastor_snapshot_newest_timestamp_seconds", "When the newest snapshot of each kind was taken, seconds since 1970."),
        MetricDescription("zumastor_snapshot_newest_age_seconds", "Age of the newest snapshot of each kind, at the scrape."),
        MetricDescription("zumastor_replication_last_success_timestamp_seconds", "When the last replication cycle succeeded, seconds since 1970."),
        MetricDescription("zumastor_replication_lag_seconds", "Age of the newest snapshot the replica holds, at the scrape."),
        MetricDescription("zumastor_replication_bytes_total", "Bytes sent (direction target) or received (direction source) by replication cycles."),
        MetricDescription("zumastor_replication_failures_total", "Failed replication cycles, by reason: network, peer_key, refused, protocol, stream or local."),
        MetricDescription("zumastor_replication_transfer_running", "1 while a transfer is under way, else 0."),
        MetricDescription("zumastor_replication_transfer_chunks_done", "Chunks of the running transfer done so far."),
        MetricDescription("zumastor_replication_transfer_chunks_total", "Chunks the running transfer covers."),
        MetricDescription("zumastor_replication_transfer_bytes", "Bytes the running transfer has sent so far."),
    ]

    public static let all = server + manager
}
