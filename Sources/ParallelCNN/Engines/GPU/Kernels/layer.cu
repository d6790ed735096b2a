/* The layer strategy: the paper's CUDA design made honest. One sample at a time, one kernel per
 * layer and pass (8 launches per sample), activations in global memory (the workspace `ws`),
 * one output per thread where the layer allows it, no atomics: every sum has one owner and the
 * SPEC's order. It exists to measure what kernel launches cost; the fused kernels remove them.
 *
 * apply = 1 is the SPEC's per-sample step (parameters updated during the backward kernels, f and
 * bias terms at once, the s1 weights after the c1 errors have used them); apply = 0 writes the
 * sample's gradient to grads[slot] for batch_update. */

/* Workspace layout (floats), defined by KernelSource.LayerWorkspace in Swift and passed to the
 * compiler: WS_C1 c1 outputs [6][24][24], WS_S1 s1 outputs [6][6][6], WS_OUT outputs [10],
 * WS_ERR output errors [10], WS_S1E s1 errors [216], WS_C1E c1 errors [3456], WS_GS1 the s1
 * weight gradient held until the c1 errors are computed [16], WS_SIZE in all. */

/* c1 forward, output-stationary: block c (6 blocks) of 576 threads; thread (y, x) = (t / 24, t % 24)
 * computes c1[c][y][x] from the 5x5 window of the input (kernel column outer, row inner). */
KERNEL_SIZED(576) conv_forward_c1(GLOBAL const float* p, IMAGE_ARGS, GLOBAL const int* order, int pos,
                              GLOBAL float* ws) {
    int c = GID, y = LID / H1, x = LID % H1;
    long in = (long)order[pos] * PIXELS;
    float sum = 0.0f;
    for (int kc = 0; kc < K1; ++kc)
        for (int kr = 0; kr < K1; ++kr)
            sum += p[OFF_C1W + (c * K1 + kr) * K1 + kc] * PIXEL(in + (y + kr) * IMG + x + kc);
    ws[WS_C1 + c * MAP1 + LID] = sigmoid(sum + p[OFF_C1B + c]);
}

/* s1 forward: block c (6 blocks) of 36 threads; thread (y, x) computes s1[c][y][x] (4x4 window, stride 4). */
KERNEL_SIZED(36) subsample_forward_s1(GLOBAL const float* p, GLOBAL float* ws) {
    int c = GID, y = LID / H2, x = LID % H2;
    float sum = 0.0f;
    for (int kc = 0; kc < K2; ++kc)
        for (int kr = 0; kr < K2; ++kr)
            sum += p[OFF_S1W + kr * K2 + kc] * ws[WS_C1 + (c * H1 + K2 * y + kr) * H1 + K2 * x + kc];
    ws[WS_S1 + c * H2 * H2 + LID] = sigmoid(sum + p[OFF_S1B]);
}

/* f forward and output error: one block of 32 threads; thread o < 10 computes output o (input
 * column slowest, row, channel fastest); then thread 0 takes the softmax (modern), the error
 * target - output, the sample's loss and whether it was misclassified. */
KERNEL_SIZED(32) dense_forward_f(GLOBAL const float* p, GLOBAL const u8* labels, GLOBAL const int* order, int pos,
                            GLOBAL float* ws, GLOBAL float* losses, GLOBAL u8* wrong, int modern) {
    GLOBAL float* out = ws + WS_OUT;
    GLOBAL float* err = ws + WS_ERR;
    if (LID < CLASSES) {
        int o = LID;
        float sum = 0.0f;
        NO_UNROLL
        for (int x = 0; x < H2; ++x)
            for (int y = 0; y < H2; ++y)
                for (int c = 0; c < CH; ++c) {
                    int i = (c * H2 + y) * H2 + x;
                    sum += p[OFF_FW + o * S1_SIZE + i] * ws[WS_S1 + i];
                }
        out[o] = modern ? sum + p[OFF_FB + o] : sigmoid(sum + p[OFF_FB + o]);
    }
    BARRIER();
    if (LID == 0) {
        if (modern) {
            float largest = out[0];
            for (int o = 1; o < CLASSES; ++o) if (out[o] > largest) largest = out[o];
            float total = 0.0f;
            for (int o = 0; o < CLASSES; ++o) { out[o] = EXPF(out[o] - largest); total += out[o]; }
            for (int o = 0; o < CLASSES; ++o) out[o] /= total;
        }
        int label = labels[order[pos]];
        float squares = 0.0f;
        int best = 0;
        for (int o = 0; o < CLASSES; ++o) {
            err[o] = (o == label ? 1.0f : 0.0f) - out[o];
            squares += err[o] * err[o];
            if (out[best] < out[o]) best = o;
        }
        losses[pos] = modern ? -LOGF(out[label]) : SQRTF(squares);
        wrong[pos] = (u8)(best != label);
    }
}

/* Steps 4-5: block c (6 blocks) of 36 threads; thread (y, x) computes the error at s1[c][y][x]
 * through the f weights before this step's update. */
KERNEL_SIZED(36) dense_backward_input_f(GLOBAL const float* p, GLOBAL float* ws) {
    int i = GID * H2 * H2 + LID;
    float sum = 0.0f;
    for (int o = 0; o < CLASSES; ++o) sum += p[OFF_FW + o * S1_SIZE + i] * ws[WS_ERR + o];
    float o1 = ws[WS_S1 + i];
    ws[WS_S1E + i] = sum * o1 * (1.0f - o1);
}

/* Step 3 (and 10 for f): block o (10 blocks) of 216 threads; thread i owns f.w[o][i], thread 0 also f.b[o]. */
KERNEL_SIZED(216) dense_backward_f(GLOBAL float* p, GLOBAL float* grads, int slot, GLOBAL const float* ws, float dt, int apply) {
    int o = GID, i = LID;
    float e = ws[WS_ERR + o];
    float d = e * ws[WS_S1 + i];
    GLOBAL float* g = grads + (long)slot * NPARAM;
    if (apply) {
        p[OFF_FW + o * S1_SIZE + i] += dt * d;
        if (i == 0) p[OFF_FB + o] += dt * e;
    } else {
        g[OFF_FW + o * S1_SIZE + i] = d;
        if (i == 0) g[OFF_FB + o] = e;
    }
}

/* Step 6: one block of 32 threads; thread k < 16 sums dW_s1[k] over 216 terms (input column
 * slowest, row, channel fastest); thread 16 takes the s1 bias terms one by one in the same order. */
KERNEL_SIZED(32) subsample_backward_s1(GLOBAL float* p, GLOBAL float* grads, int slot, GLOBAL float* ws,
                             float dt, float s1_bias_divisor, int apply) {
    GLOBAL float* g = grads + (long)slot * NPARAM;
    if (LID < K2 * K2) {
        int kr = LID / K2, kc = LID % K2;
        float sum = 0.0f;
        NO_UNROLL
        for (int x = 0; x < H2; ++x)
            for (int y = 0; y < H2; ++y)
                for (int c = 0; c < CH; ++c)
                    sum += ws[WS_S1E + (c * H2 + y) * H2 + x] * ws[WS_C1 + (c * H1 + K2 * y + kr) * H1 + K2 * x + kc];
        if (apply) ws[WS_GS1 + LID] = sum; else g[OFF_S1W + LID] = sum;
    } else if (LID == K2 * K2) {
        float b = apply ? p[OFF_S1B] : 0.0f;
        NO_UNROLL
        for (int x = 0; x < H2; ++x)
            for (int y = 0; y < H2; ++y)
                for (int c = 0; c < CH; ++c) {
                    float term = ws[WS_S1E + (c * H2 + y) * H2 + x];
                    if (apply) b += dt * term / s1_bias_divisor; else b += term / s1_bias_divisor;
                }
        if (apply) p[OFF_S1B] = b; else g[OFF_S1B] = b;
    }
}

/* Steps 7-8: block c (6 blocks) of 576 threads; thread (y, x) computes the error at c1[c][y][x]
 * through the s1 weights before this step's update. */
KERNEL_SIZED(576) subsample_backward_input_s1(GLOBAL const float* p, GLOBAL float* ws) {
    int c = GID, y = LID / H1, x = LID % H1;
    float upstream = p[OFF_S1W + (y % K2) * K2 + x % K2] * ws[WS_S1E + (c * H2 + y / K2) * H2 + x / K2];
    float o1 = ws[WS_C1 + c * MAP1 + LID];
    ws[WS_C1E + c * MAP1 + LID] = upstream * o1 * (1.0f - o1);
}

/* Step 9 (and 10 for s1 and c1): block c (6 blocks) of 32 threads; thread k < 25 sums the c1 weight
 * gradient (c, k / 5, k % 5) over the 576 map positions column-major, each term divided; thread 25
 * takes channel c's bias terms one by one. With apply, block 0's threads 0..15 also add the s1 weight
 * step held since subsample_backward_s1 (the c1 errors needed the old s1 weights). */
KERNEL_SIZED(32) conv_backward_c1(GLOBAL float* p, IMAGE_ARGS, GLOBAL const int* order, int pos,
                             GLOBAL float* grads, int slot, GLOBAL const float* ws, float dt, float c1_divisor, int apply) {
    int c = GID;
    long in = (long)order[pos] * PIXELS;
    GLOBAL const float* e = ws + WS_C1E + c * MAP1;
    GLOBAL float* g = grads + (long)slot * NPARAM;
    if (apply && c == 0 && LID < K2 * K2) p[OFF_S1W + LID] += dt * ws[WS_GS1 + LID];
    if (LID < K1 * K1) {
        int kr = LID / K1, kc = LID % K1;
        float sum = 0.0f;
        NO_UNROLL
        for (int x = 0; x < H1; ++x)
            for (int y = 0; y < H1; ++y)
                sum += e[y * H1 + x] * PIXEL(in + (y + kr) * IMG + x + kc) / c1_divisor;
        if (apply) p[OFF_C1W + c * K1 * K1 + LID] += dt * sum; else g[OFF_C1W + c * K1 * K1 + LID] = sum;
    } else if (LID == K1 * K1) {
        float b = apply ? p[OFF_C1B + c] : 0.0f;
        NO_UNROLL
        for (int x = 0; x < H1; ++x)
            for (int y = 0; y < H1; ++y) {
                if (apply) b += dt * e[y * H1 + x] / c1_divisor; else b += e[y * H1 + x] / c1_divisor;
            }
        if (apply) p[OFF_C1B + c] = b; else g[OFF_C1B + c] = b;
    }
}
