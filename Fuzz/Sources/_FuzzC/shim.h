// zlib, to make gzip inputs, and libFuzzer's driver entry point (compiler-rt, linked by
// -sanitize=fuzzer), which each target's main calls.
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
