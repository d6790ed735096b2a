/* A conv layer's device passes. NetworkKernels pastes this template once per conv layer, with
 * its shapes defined in front of it: IN_C, IN_H, IN_W, OUT_C (filters), OUT_H, OUT_W, KSIZE,
 * STRIDE, PAD, IN_SIZE, OUT_SIZE, W_OFF and B_OFF (its tensors in the parameter vector),
 * N_WEIGHTS, N_BIASES; L(name) appends the layer's number, TYPED(name) its type and number.
 * Activations and errors are [sample][channel][row][column]. Each output element is one sum,
 * in the reference's order (ReferenceLayers.convForward and convBackward). */

/* y = b[f] + sum over (c, ky, kx) of w[f][c][ky][kx] * x[c][oy*S+ky-P][ox*S+kx-P]. */
DEVICE_FN void L(conv_forward_items)(GLOBAL const float* p, GLOBAL const float* x, GLOBAL float* y, int count, int first,
                                     int step) {
    NO_UNROLL
    for (int t = first; t < count * OUT_SIZE; t += step) {
        int s = t / OUT_SIZE, o = t - s * OUT_SIZE;
        int f = o / (OUT_H * OUT_W), oy = (o / OUT_W) % OUT_H, ox = o % OUT_W;
        GLOBAL const float* xs = x + (long)s * IN_SIZE;
        GLOBAL const float* w = p + W_OFF + f * IN_C * KSIZE * KSIZE;
        float sum = 0.0f;
        for (int c = 0; c < IN_C; ++c)
            for (int ky = 0; ky < KSIZE; ++ky) {
                int iy = oy * STRIDE + ky - PAD;
                if (iy < 0 || iy >= IN_H) continue;
                for (int kx = 0; kx < KSIZE; ++kx) {
                    int ix = ox * STRIDE + kx - PAD;
                    if (ix < 0 || ix >= IN_W) continue;
                    sum += w[(c * KSIZE + ky) * KSIZE + kx] * xs[(c * IN_H + iy) * IN_W + ix];
                }
            }
        y[t] = sum + p[B_OFF + f];
    }
}

/* The input error dx[c][iy][ix] = sum of w * dy over the outputs whose window covers it, in the
 * reference's order: filter, then output row, then output column ascending (kernel offsets
 * descending). */
DEVICE_FN void L(conv_backward_input_items)(GLOBAL const float* p, GLOBAL const float* x, GLOBAL const float* y,
                                            GLOBAL const float* dy, GLOBAL float* dx, int count, int first, int step) {
    NO_UNROLL
    for (int t = first; t < count * IN_SIZE; t += step) {
        int s = t / IN_SIZE, i = t - s * IN_SIZE;
        int c = i / (IN_H * IN_W), iy = (i / IN_W) % IN_H, ix = i % IN_W;
        GLOBAL const float* dys = dy + (long)s * OUT_SIZE;
        float sum = 0.0f;
        for (int f = 0; f < OUT_C; ++f)
            for (int ky = KSIZE - 1; ky >= 0; --ky) {
                int ny = iy + PAD - ky;
                if (ny < 0 || ny % STRIDE != 0 || ny / STRIDE >= OUT_H) continue;
                for (int kx = KSIZE - 1; kx >= 0; --kx) {
                    int nx = ix + PAD - kx;
                    if (nx < 0 || nx % STRIDE != 0 || nx / STRIDE >= OUT_W) continue;
                    sum += p[W_OFF + ((f * IN_C + c) * KSIZE + ky) * KSIZE + kx] *
                           dys[(f * OUT_H + ny / STRIDE) * OUT_W + nx / STRIDE];
                }
            }
        dx[t] = sum;
    }
}

/* Gradient sums: parameter j (weights, then one bias per filter) sums TERMS_PER_SAMPLE terms
 * per sample, one per output position. */
#define TERMS_PER_SAMPLE (OUT_H * OUT_W)
DEVICE_FN float L(conv_gradient_term)(GLOBAL const float* x, GLOBAL const float* dy, int j, int t) {
    int s = t / TERMS_PER_SAMPLE, pos = t - s * TERMS_PER_SAMPLE;
    if (j >= N_WEIGHTS) return dy[(long)s * OUT_SIZE + (j - N_WEIGHTS) * TERMS_PER_SAMPLE + pos];
    int f = j / (IN_C * KSIZE * KSIZE), r = j % (IN_C * KSIZE * KSIZE);
    int c = r / (KSIZE * KSIZE), ky = (r / KSIZE) % KSIZE, kx = r % KSIZE;
    int iy = (pos / OUT_W) * STRIDE + ky - PAD, ix = (pos % OUT_W) * STRIDE + kx - PAD;
    if (iy < 0 || iy >= IN_H || ix < 0 || ix >= IN_W) return 0.0f;
    return dy[(long)s * OUT_SIZE + f * TERMS_PER_SAMPLE + pos] * x[(long)s * IN_SIZE + (c * IN_H + iy) * IN_W + ix];
}
