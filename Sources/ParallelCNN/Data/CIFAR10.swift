import Foundation

/// CIFAR-10's binary version (https://www.cs.toronto.edu/~kriz/cifar.html, "CIFAR-10 binary
/// version (suitable for C programs)", `cifar-10-binary.tar.gz`, 162 MB, MD5
/// c32a1d4ab5d03f1284b67883e8d87530 as the page gives it). Unpacked, its folder
/// `cifar-10-batches-bin` holds `data_batch_1.bin` … `data_batch_5.bin` (the 50000 training
/// images) and `test_batch.bin` (10000), each 10000 records of 3073 bytes: one label byte 0...9,
/// then 1024 red, 1024 green and 1024 blue pixel bytes, each plane 32×32 row-major, which is the
/// `[c][y][x]` layout of a 3×32×32 `ImageShape` as it stands.
///
/// The official page gives no SHA-256, so pcnn does not download the archive: it checks every
/// file's size and every label instead.
public enum CIFAR10 {
    public static let recordBytes = 1 + ImageShape.cifar10.count
    public static let recordsPerFile = 10_000
    public static let trainFiles = (1...5).map { "data_batch_\($0).bin" }
    public static let testFile = "test_batch.bin"

    /// Reads one batch file: its pixel bytes and labels.
    /// - Throws: `DataError.fileNotFound`, `.unreadable`, `.partialRecord` when the size is not a
    ///   whole number of records (or the file is empty), `.trailingData` when it holds more than
    ///   `recordsPerFile` records, `.badLabel` for a label of 10 or more.
    public static func readBatch(at path: String) throws(DataError) -> (pixels: [UInt8], labels: [UInt8]) {
        guard FileManager.default.fileExists(atPath: path) else { throw .fileNotFound(path: path) }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .unreadable(path: path, reason: error.localizedDescription)
        }
        guard !data.isEmpty, data.count % recordBytes == 0 else {
            throw .partialRecord(path: path, recordBytes: recordBytes, gotBytes: data.count)
        }
        let records = data.count / recordBytes
        guard records <= recordsPerFile else { throw .trailingData(path: path, expectedBytes: recordsPerFile * recordBytes) }
        let imageBytes = ImageShape.cifar10.count
        var pixels = [UInt8](repeating: 0, count: records * imageBytes)
        var labels = [UInt8](repeating: 0, count: records)
        var badLabel: (Int, UInt8)?
        data.withUnsafeBytes { raw in
            pixels.withUnsafeMutableBytes { out in
                for r in 0..<records {
                    let label = raw[r * recordBytes]
                    if label >= 10, badLabel == nil { badLabel = (r, label) }
                    labels[r] = label
                    out.baseAddress!.advanced(by: r * imageBytes)
                        .copyMemory(from: raw.baseAddress!.advanced(by: r * recordBytes + 1), byteCount: imageBytes)
                }
            }
        }
        if let (index, value) = badLabel { throw .badLabel(path: path, index: index, value: value) }
        return (pixels, labels)
    }

    /// Loads the training batches (in order 1...5) and the test batch from `directory`.
    public static func load(from directory: String) throws(DataError) -> DatasetPair {
        let missing = (trainFiles + [testFile]).filter { DatasetLoader.path(of: $0, in: directory) == nil }
        guard missing.isEmpty else { throw .missingFiles(directory: directory, origin: "given directory", missing: missing) }
        var trainPixels: [UInt8] = [], trainLabels: [UInt8] = []
        for name in trainFiles {
            let batch = try readBatch(at: (directory as NSString).appendingPathComponent(name))
            trainPixels += batch.pixels
            trainLabels += batch.labels
        }
        let test = try readBatch(at: (directory as NSString).appendingPathComponent(testFile))
        return DatasetPair(
            train: Dataset(name: "cifar10-train", pixelBytes: trainPixels, labels: trainLabels, shape: .cifar10),
            test: Dataset(name: "cifar10-test", pixelBytes: test.pixels, labels: test.labels, shape: .cifar10))
    }
}
