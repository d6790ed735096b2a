/* A dense layer's device passes, pasted once per layer (shape constants: see Conv+Device.cu;
 * IN_SIZE inputs, OUT_SIZE outputs). Sums in ReferenceLayers.denseForward/denseBackward's order. */

DEVICE_FN void L(dense_forward_items)(GLOBAL const float* p, GLOBAL const float* x, GLOBAL float* y, int count, int first,
                                      int step) {
    NO_UNROLL
    for (int t = first; t < count * OUT_SIZE; t += step) {
        int s = t / OUT_SIZE, o = t - s * OUT_SIZE;
        GLOBAL const float* xs = x + (long)s * IN_SIZE;
        GLOBAL const float* w = p + W_OFF + (long)o * IN_SIZE;
        float sum = 0.0f;
        NO_UNROLL
        for (int i = 0; i < IN_SIZE; ++i) sum += w[i] * xs[i];
        y[t] = sum + p[B_OFF + o];
    }
}

DEVICE_FN void L(dense_backward_input_items)(GLOBAL const float* p, GLOBAL const float* x, GLOBAL const float* y,
                                             GLOBAL const float* dy, GLOBAL float* dx, int count, int first, int step) {
    NO_UNROLL
    for (int t = first; t < count * IN_SIZE; t += step) {
        int s = t / IN_SIZE, i = t - s * IN_SIZE;
        GLOBAL const float* dys = dy + (long)s * OUT_SIZE;
        float sum = 0.0f;
        NO_UNROLL
        for (int o = 0; o < OUT_SIZE; ++o) sum += p[W_OFF + (long)o * IN_SIZE + i] * dys[o];
        dx[t] = sum;
    }
}

/* Parameter j: weights [o][i], then the biases; one term per sample. */
#define TERMS_PER_SAMPLE 1
DEVICE_FN float L(dense_gradient_term)(GLOBAL const float* x, GLOBAL const float* dy, int j, int s) {
    if (j >= N_WEIGHTS) return dy[(long)s * OUT_SIZE + (j - N_WEIGHTS)];
    int o = j / IN_SIZE, i = j - o * IN_SIZE;
    return dy[(long)s * OUT_SIZE + o] * x[(long)s * IN_SIZE + i];
}
