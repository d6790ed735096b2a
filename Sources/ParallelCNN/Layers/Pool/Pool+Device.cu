/* Average and max pooling on the device, pasted once per layer (shape constants: see
 * Conv+Device.cu; KSIZE the window, STRIDE its step, POOL_MAX 1 for max). Max pooling's ties go
 * to the first maximum in row-major order of the window, which alone receives the error, as in
 * ReferenceLayers.poolForward/poolBackward. */

DEVICE_FN void L(pool_forward_items)(GLOBAL const float* p, GLOBAL const float* x, GLOBAL float* y, int count, int first, int step) {
    NO_UNROLL
    for (int t = first; t < count * OUT_SIZE; t += step) {
        int s = t / OUT_SIZE, o = t - s * OUT_SIZE;
        int c = o / (OUT_H * OUT_W), oy = (o / OUT_W) % OUT_H, ox = o % OUT_W;
        GLOBAL const float* xs = x + (long)s * IN_SIZE + c * IN_H * IN_W;
        float sum = 0.0f, best = -INFINITY;
        for (int wy = 0; wy < KSIZE; ++wy)
            for (int wx = 0; wx < KSIZE; ++wx) {
                float v = xs[(oy * STRIDE + wy) * IN_W + ox * STRIDE + wx];
                sum += v;
                if (v > best) best = v;
            }
        y[t] = POOL_MAX ? best : sum / (float)(KSIZE * KSIZE);
    }
}

/* Whether input (iy, ix) of a channel is the first maximum of window (oy, ox). */
DEVICE_FN int L(pool_is_argmax)(GLOBAL const float* xc, int oy, int ox, int iy, int ix) {
    float best = -INFINITY;
    int best_y = -1, best_x = -1;
    for (int wy = 0; wy < KSIZE; ++wy)
        for (int wx = 0; wx < KSIZE; ++wx) {
            float v = xc[(oy * STRIDE + wy) * IN_W + ox * STRIDE + wx];
            if (v > best) {
                best = v;
                best_y = oy * STRIDE + wy;
                best_x = ox * STRIDE + wx;
            }
        }
    return best_y == iy && best_x == ix;
}

/* dx gathers the errors of the windows that cover it, rows then columns ascending. */
DEVICE_FN void L(pool_backward_items)(GLOBAL const float* p, GLOBAL const float* x, GLOBAL const float* y, GLOBAL const float* dy,
                                      GLOBAL float* dx, int count, int first, int step) {
    NO_UNROLL
    for (int t = first; t < count * IN_SIZE; t += step) {
        int s = t / IN_SIZE, i = t - s * IN_SIZE;
        int c = i / (IN_H * IN_W), iy = (i / IN_W) % IN_H, ix = i % IN_W;
        GLOBAL const float* dyc = dy + (long)s * OUT_SIZE + c * OUT_H * OUT_W;
        GLOBAL const float* xc = x + (long)s * IN_SIZE + c * IN_H * IN_W;
        int oy_first = iy < KSIZE ? 0 : (iy - KSIZE) / STRIDE + 1, ox_first = ix < KSIZE ? 0 : (ix - KSIZE) / STRIDE + 1;
        float sum = 0.0f;
        for (int oy = oy_first; oy <= iy / STRIDE && oy < OUT_H; ++oy)
            for (int ox = ox_first; ox <= ix / STRIDE && ox < OUT_W; ++ox) {
                float e = dyc[oy * OUT_W + ox];
                if (POOL_MAX) {
                    if (L(pool_is_argmax)(xc, oy, ox, iy, ix)) sum += e;
                } else {
                    sum += e / (float)(KSIZE * KSIZE);
                }
            }
        dx[t] = sum;
    }
}
