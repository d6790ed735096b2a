/* An activation layer on the device, pasted once per layer (OUT_SIZE values per sample;
 * ACTIVATION 0 sigmoid, 1 tanh, 2 relu), as ReferenceLayers.activationForward/activationBackward:
 * the backward pass uses the layer's output y. */

DEVICE_FN void L(activation_forward_items)(GLOBAL const float* p, GLOBAL const float* x, GLOBAL float* y, int count, int first, int step) {
    NO_UNROLL
    for (int t = first; t < count * OUT_SIZE; t += step) {
        float v = x[t];
        y[t] = ACTIVATION == 0 ? 1.0f / (1.0f + EXPF(-v)) : ACTIVATION == 1 ? TANHF(v) : (v > 0.0f ? v : 0.0f);
    }
}

DEVICE_FN void L(activation_backward_items)(GLOBAL const float* p, GLOBAL const float* x, GLOBAL const float* y,
                                            GLOBAL const float* dy, GLOBAL float* dx, int count, int first, int step) {
    NO_UNROLL
    for (int t = first; t < count * OUT_SIZE; t += step) {
        float v = y[t], e = dy[t];
        dx[t] = ACTIVATION == 0 ? e * v * (1.0f - v) : ACTIVATION == 1 ? e * (1.0f - v * v) : (v > 0.0f ? e : 0.0f);
    }
}
