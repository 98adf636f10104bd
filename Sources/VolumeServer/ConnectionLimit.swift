// A cap on the connections a listener keeps open at once. A connection past it is closed as
// soon as it is accepted (and logged), so a client that opens thousands of connections costs
// the server a bounded number of handlers, buffers and threads.

import Logging
import NIOConcurrencyHelpers
import NIOCore

final class ConnectionLimit: Sendable {
    let maximum: Int
    let what: String
    private let open = NIOLockedValueBox(0)

    init(maximum: Int, what: String) {
        precondition(maximum > 0)
        (self.maximum, self.what) = (maximum, what)
    }

    /// Takes a place for `channel` until it closes; false (the channel closed, a line logged)
    /// when every place is taken.
    func admit(_ channel: Channel, logger: Logger) -> Bool {
        let admitted = open.withLockedValue { count -> Bool in
            guard count < maximum else { return false }
            count += 1
            return true
        }
        guard admitted else {
            logger.warning("refused a \(what) connection: \(maximum) are open already (the limit)")
            channel.close(promise: nil)
            return false
        }
        channel.closeFuture.whenComplete { _ in self.open.withLockedValue { $0 -= 1 } }
        return true
    }

    var count: Int { open.withLockedValue { $0 } }
}
