// The applier's second thread. Records are gathered into batches on the thread that reads the
// stream (or runs the encoder); each full batch is written to the replica on this writer's
// thread while the next one fills. One batch is in flight at a time, and only the writer
// touches the replica while it is, so the replica still sees one caller at a time.

import Dispatch

final class BatchWriter: @unchecked Sendable {
    private let queue = DispatchQueue(label: "delta-apply-writer")
    private let group = DispatchGroup()
    /// The first error of a batch; read only after `group.wait()`.
    private var failure: (any Error)?

    /// Waits for the batch in flight, then starts `job` on the writer's thread. Throws the
    /// error of an earlier batch (nothing more is started after a failure).
    func submit(_ job: @escaping @Sendable () throws -> Void) throws {
        try drain()
        group.enter()
        queue.async { [self] in
            do { try job() } catch { failure = error }
            group.leave()
        }
    }

    /// Waits for the batch in flight; throws its error.
    func drain() throws {
        group.wait()
        if let failure { throw failure }
    }

    /// Waits for the batch in flight, whatever its outcome (before the replica is put back).
    func settle() { group.wait() }
}
