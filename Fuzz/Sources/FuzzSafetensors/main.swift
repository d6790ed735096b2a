import _FuzzC
import Foundation
import ParallelCNN

/// The input is a safetensors file. Both layers are fuzzed: the checkpoint loader (what
/// `pcnn train --resume` and `pcnn test --model` call), and the safetensors decoder, whose
/// accepted files must re-encode and decode to the same tensors and metadata.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensors(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let data = Data(UnsafeRawBufferPointer(start: start, count: count))
    if let checkpoint = try? Checkpoint.decode(data) {
        precondition(checkpoint.parameters.values.allSatisfy(\.isFinite), "a non-finite checkpoint was accepted")
        precondition(checkpoint.parameters.values.count == Parameters.count)
    }
    guard let file = try? SafetensorsFile.decode(data, path: "fuzz") else { return 0 }
    let again: SafetensorsFile
    do {
        again = try SafetensorsFile.decode(file.encoded(), path: "fuzz re-encoded")
    } catch {
        preconditionFailure("a decoded file does not survive re-encoding: \(error)")
    }
    precondition(again.metadata == file.metadata, "metadata changed in a round trip")
    precondition(again.tensors.map(\.name) == file.tensors.map(\.name), "tensor order changed in a round trip")
    precondition(again.tensors.map(\.shape) == file.tensors.map(\.shape), "shapes changed in a round trip")
    precondition(
        again.tensors.map { $0.values.map(\.bitPattern) } == file.tensors.map { $0.values.map(\.bitPattern) },
        "values changed in a round trip")
    return 0
}

@_cdecl("FuzzSafetensors_main")
func fuzzSafetensorsMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var (argc, argv) = (argc, argv)
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzSafetensors(data, size) }
}
