import _FuzzC
import FuzzSupport

#if canImport(Glibc)
import Glibc
#endif

/// The first input byte chooses how the rest reaches the reader as a `*.gz` file:
/// - 0: the bytes as they are (a damaged or hand-made gzip stream);
/// - 1: gzip-compressed by zlib (a valid stream: the fuzzer explores the IDX structure behind it);
/// - 2: compressed, then cut after a position taken from the last two bytes (a truncated download);
/// - 3: compressed, then one byte flipped at such a position (bit rot: a CRC, length or deflate error).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIDXGzip(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard count >= 1 else { return 0 }
    let input = UnsafeRawBufferPointer(start: start, count: count)
    let mode = input[0] % 4
    let payload = UnsafeRawBufferPointer(rebasing: input[1...])
    var file: [UInt8]
    if mode == 0 {
        file = Array(payload)
    } else {
        file = gzipped(payload)
        let where_ = count >= 3 ? (Int(input[count - 2]) << 8 | Int(input[count - 1])) % file.count : 0
        if mode == 2 { file.removeSubrange(where_...) }
        if mode == 3 { file[where_] ^= 0xff }
    }
    let path = file.withUnsafeBytes { IDXFuzzing.write($0, name: "data-idx-ubyte.gz") }
    IDXFuzzing.readBoth(path)
    return 0
}

/// `bytes` as one gzip member (header, deflate data, CRC-32 and length trailer).
private func gzipped(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
    var stream = z_stream()
    // windowBits 15 + 16: a gzip wrapper instead of zlib's.
    var status = deflateInit2_(
        &stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
        ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
    precondition(status == Z_OK, "deflateInit2 failed: \(status)")
    defer { deflateEnd(&stream) }
    var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, UInt(bytes.count))))
    let written: Int = output.withUnsafeMutableBytes { out in
        stream.next_in = UnsafeMutablePointer(mutating: bytes.bindMemory(to: UInt8.self).baseAddress)
        stream.avail_in = UInt32(bytes.count)
        stream.next_out = out.bindMemory(to: UInt8.self).baseAddress
        stream.avail_out = UInt32(out.count)
        status = deflate(&stream, Z_FINISH)
        return out.count - Int(stream.avail_out)
    }
    precondition(status == Z_STREAM_END, "deflate did not finish: \(status)")
    return Array(output[..<written])
}

@_cdecl("FuzzIDXGzip_main")
func fuzzIDXGzipMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var (argc, argv) = (argc, argv)
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzIDXGzip(data, size) }
}
