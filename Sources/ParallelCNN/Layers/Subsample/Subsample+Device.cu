/* The paper's learnable subsampling on the device (one KSIZE x KSIZE kernel, stride KSIZE, and
 * one bias shared by every channel). A template pasted once per layer; see Conv+Device.cu for
 * the shape constants. Sums in ReferenceLayers.subsampleForward/subsampleBackward's order. */

DEVICE_FN void L(subsample_forward_items)(GLOBAL const float* p, GLOBAL const float* x, GLOBAL float* y, int count, int first,
                                          int step) {
    NO_UNROLL
    for (int t = first; t < count * OUT_SIZE; t += step) {
        int s = t / OUT_SIZE, o = t - s * OUT_SIZE;
        int c = o / (OUT_H * OUT_W), oy = (o / OUT_W) % OUT_H, ox = o % OUT_W;
        GLOBAL const float* xs = x + (long)s * IN_SIZE + c * IN_H * IN_W;
        float sum = 0.0f;
        for (int ky = 0; ky < KSIZE; ++ky)
            for (int kx = 0; kx < KSIZE; ++kx)
                sum += p[W_OFF + ky * KSIZE + kx] * xs[(KSIZE * oy + ky) * IN_W + KSIZE * ox + kx];
        y[t] = sum + p[B_OFF];
    }
}

/* Windows do not overlap: each input is covered once (or not at all, past the last window). */
DEVICE_FN void L(subsample_backward_input_items)(GLOBAL const float* p, GLOBAL const float* x, GLOBAL const float* y,
                                                 GLOBAL const float* dy, GLOBAL float* dx, int count, int first, int step) {
    NO_UNROLL
    for (int t = first; t < count * IN_SIZE; t += step) {
        int s = t / IN_SIZE, i = t - s * IN_SIZE;
        int c = i / (IN_H * IN_W), iy = (i / IN_W) % IN_H, ix = i % IN_W;
        int oy = iy / KSIZE, ox = ix / KSIZE;
        dx[t] = oy < OUT_H && ox < OUT_W
                    ? p[W_OFF + (iy % KSIZE) * KSIZE + ix % KSIZE] * dy[(long)s * OUT_SIZE + (c * OUT_H + oy) * OUT_W + ox]
                    : 0.0f;
    }
}

/* Parameter j: the KSIZE*KSIZE weights, then the bias; one term per output of every channel. */
#define TERMS_PER_SAMPLE OUT_SIZE
DEVICE_FN float L(subsample_gradient_term)(GLOBAL const float* x, GLOBAL const float* dy, int j, int t) {
    int s = t / OUT_SIZE, o = t - s * OUT_SIZE;
    float e = dy[(long)s * OUT_SIZE + o];
    if (j >= N_WEIGHTS) return e;
    int c = o / (OUT_H * OUT_W), oy = (o / OUT_W) % OUT_H, ox = o % OUT_W;
    int ky = j / KSIZE, kx = j % KSIZE;
    return e * x[(long)s * IN_SIZE + (c * IN_H + KSIZE * oy + ky) * IN_W + KSIZE * ox + kx];
}
