import Testing
@testable import Transport

@Suite struct EndpointTests {
    @Test func hostsPortsAndIPv6() throws {
        #expect(try Endpoint(parsing: "replica.example.com") == Endpoint(host: "replica.example.com", port: 11235))
        #expect(try Endpoint(parsing: "10.0.0.2:4000") == Endpoint(host: "10.0.0.2", port: 4000))
        #expect(try Endpoint(parsing: "fe80::1") == Endpoint(host: "fe80::1", port: 11235))
        #expect(try Endpoint(parsing: "[fe80::1]:99") == Endpoint(host: "fe80::1", port: 99))
        #expect(try Endpoint(parsing: "[fe80::1]").description == "[fe80::1]:11235")
        for bad in ["", ":80", "host:", "host:0", "host:65536", "host:http", "[fe80::1", "[fe80::1]x", "a b", "[::1]:x"] {
            #expect(throws: TransportError.self, "\(bad)") { _ = try Endpoint(parsing: bad) }
        }
    }
}
