// Constants of the NBD protocol (the fixed newstyle handshake and the transmission phase),
// as the protocol document names them. Everything on the wire is big-endian.

enum NBD {
    static let initMagic: UInt64 = 0x4E42_444D_4147_4943        // "NBDMAGIC"
    static let optionMagic: UInt64 = 0x4948_4156_454F_5054      // "IHAVEOPT"
    static let optionReplyMagic: UInt64 = 0x0003_E889_0455_65A9
    static let requestMagic: UInt32 = 0x2560_9513
    static let simpleReplyMagic: UInt32 = 0x6744_6698
    static let structuredReplyMagic: UInt32 = 0x668E_33EF

    // Handshake flags (server) and client flags.
    static let flagFixedNewstyle: UInt16 = 1 << 0
    static let flagNoZeroes: UInt16 = 1 << 1
    static let clientFlagFixedNewstyle: UInt32 = 1 << 0
    static let clientFlagNoZeroes: UInt32 = 1 << 1

    // Options.
    static let optExportName: UInt32 = 1
    static let optAbort: UInt32 = 2
    static let optList: UInt32 = 3
    static let optStartTLS: UInt32 = 5
    static let optInfo: UInt32 = 6
    static let optGo: UInt32 = 7
    static let optStructuredReply: UInt32 = 8

    // Option replies.
    static let repAck: UInt32 = 1
    static let repServer: UInt32 = 2
    static let repInfo: UInt32 = 3
    static let repErrUnsupported: UInt32 = 1 << 31 | 1
    static let repErrPolicy: UInt32 = 1 << 31 | 2
    static let repErrInvalid: UInt32 = 1 << 31 | 3
    static let repErrTLSRequired: UInt32 = 1 << 31 | 5
    static let repErrUnknown: UInt32 = 1 << 31 | 6
    static let repErrTooBig: UInt32 = 1 << 31 | 9

    // Info types.
    static let infoExport: UInt16 = 0
    static let infoName: UInt16 = 1
    static let infoDescription: UInt16 = 2
    static let infoBlockSize: UInt16 = 3

    // Transmission flags.
    static let transHasFlags: UInt16 = 1 << 0
    static let transReadOnly: UInt16 = 1 << 1
    static let transSendFlush: UInt16 = 1 << 2
    static let transSendFUA: UInt16 = 1 << 3
    static let transSendTrim: UInt16 = 1 << 5
    static let transSendWriteZeroes: UInt16 = 1 << 6
    static let transCanMultiConn: UInt16 = 1 << 8

    // Commands and their flags.
    static let cmdRead: UInt16 = 0
    static let cmdWrite: UInt16 = 1
    static let cmdDisconnect: UInt16 = 2
    static let cmdFlush: UInt16 = 3
    static let cmdTrim: UInt16 = 4
    static let cmdWriteZeroes: UInt16 = 6
    static let cmdFlagFUA: UInt16 = 1 << 0
    static let cmdFlagNoHole: UInt16 = 1 << 1
    static let cmdFlagFastZero: UInt16 = 1 << 4

    // Structured reply chunks.
    static let replyFlagDone: UInt16 = 1
    static let replyTypeNone: UInt16 = 0
    static let replyTypeOffsetData: UInt16 = 1
    static let replyTypeError: UInt16 = 1 << 15 | 1

    // Errors.
    static let errPerm: UInt32 = 1
    static let errIO: UInt32 = 5
    static let errNoMem: UInt32 = 12
    static let errInvalid: UInt32 = 22
    static let errNoSpace: UInt32 = 28
    static let errOverflow: UInt32 = 75
    static let errNotSupported: UInt32 = 95
    static let errShutdown: UInt32 = 108

    /// Largest request payload (read or write) a client may ask for.
    static let requestBytesMax = 32 << 20
    /// Largest option payload accepted; longer ones are skipped and refused.
    static let optionBytesMax = 64 << 10
    static let preferredBlockBytes: UInt32 = 4096
}
