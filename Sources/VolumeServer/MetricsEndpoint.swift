// The HTTP endpoint Prometheus scrapes: GET /metrics answers the text `render` makes, in
// the exposition format (version 0.0.4). Plain HTTP with no authentication, so it listens on
// loopback addresses only; a scraper on another host goes through a proxy that adds TLS.
// Each scrape renders on a queue of its own (rendering may ask volume servers and wait),
// at most `connectionsMax` connections are open, a connection idle for 10 s is closed, and
// each connection serves one request (`Connection: close`).

import Dispatch
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import VolumeInterface

public final class MetricsEndpoint: Sendable {
    public static let defaultPort = 9339
    public static let connectionsMax = 16
    private let channel: Channel
    /// The address bound, HOST:PORT (the port chosen by the kernel when 0 was asked).
    public let address: String

    /// Listens on `host`:`port`, a loopback address.
    public init(host: String, port: Int, group: EventLoopGroup, logger: Logger, render: @escaping @Sendable () -> String) throws {
        try MetricsEndpoint.checkLoopback(host)
        let limit = ConnectionLimit(maximum: MetricsEndpoint.connectionsMax, what: "metrics")
        let queue = DispatchQueue(label: "metrics-render")
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 16)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard limit.admit(channel, logger: logger) else { return }
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(allTimeout: .seconds(10)))
                    try sync.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: true)
                    try sync.addHandler(MetricsRequestHandler(queue: queue, render: render))
                }
            }
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            throw VolumeError.system("cannot serve metrics on \(host):\(port): \(error)")
        }
        let bound = channel.localAddress?.port ?? port
        address = host.contains(":") ? "[\(host)]:\(bound)" : "\(host):\(bound)"
    }

    public func close() { _ = try? channel.close().wait() }

    /// Refuses an address other hosts could reach: metrics go out unencrypted and to anyone.
    public static func checkLoopback(_ host: String) throws {
        var v4 = in_addr(), v6 = in6_addr()
        guard host == "localhost" || inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1 else {
            throw VolumeError.invalidArgument("metrics address '\(host)' is not an IP address")
        }
        let loopback = isLoopbackAddress(host)
        guard loopback else {
            throw VolumeError.invalidArgument("metrics are served only on loopback addresses (127.0.0.1, ::1): plain HTTP without authentication must not leave the host; give 127.0.0.1:PORT and scrape through a TLS proxy")
        }
    }
}

/// One request per connection: GET (or HEAD) /metrics, else 404 or 405.
private final class MetricsRequestHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let queue: DispatchQueue
    private let render: @Sendable () -> String
    private var head: HTTPRequestHead?

    init(queue: DispatchQueue, render: @escaping @Sendable () -> String) {
        (self.queue, self.render) = (queue, render)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(h): head = h
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            respond(context: context, to: head)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent { context.close(promise: nil) } else { context.fireUserInboundEventTriggered(event) }
    }

    private func respond(context: ChannelHandlerContext, to head: HTTPRequestHead) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        guard head.method == .GET || head.method == .HEAD else {
            return send(context, .methodNotAllowed, "only GET and HEAD are served\n", head: head, extra: [("Allow", "GET, HEAD")])
        }
        guard path == "/metrics" else { return send(context, .notFound, "metrics are at /metrics\n", head: head) }
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        queue.async { [render] in
            let text = render()
            loop.execute {
                let (handler, context) = bound.value
                handler.send(context, .ok, text, head: head, contentType: "text/plain; version=0.0.4; charset=utf-8")
            }
        }
    }

    private func send(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ text: String, head: HTTPRequestHead,
                      contentType: String = "text/plain; charset=utf-8", extra: [(String, String)] = []) {
        let bytes = Array(text.utf8)
        var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", String(bytes.count)), ("Connection", "close")])
        for (name, value) in extra { headers.add(name: name, value: value) }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: bytes)))), promise: nil)
        }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
