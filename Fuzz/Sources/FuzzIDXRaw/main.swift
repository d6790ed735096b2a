import _FuzzC
import FuzzSupport

/// The input is an IDX file as it lies on disk, without a `.gz` name (so gzip data is still
/// recognised by its magic bytes and decompressed, as the reader does for any file).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIDXRaw(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    IDXFuzzing.readBoth(IDXFuzzing.write(UnsafeRawBufferPointer(start: start, count: count), name: "data-idx-ubyte"))
    return 0
}

@_cdecl("FuzzIDXRaw_main")
func fuzzIDXRawMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var (argc, argv) = (argc, argv)
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzIDXRaw(data, size) }
}
