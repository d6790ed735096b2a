/* The network's passes for one sample held by one work-group in local (shared) memory.
 * Every function is called by all GROUP_SIZE work-items of the group; the comment on each says
 * how work-items map to work. Sums run in the SPEC's canonical order, so a work-item that owns
 * an output computes it exactly as the sequential program does. */

DEVICE_FN float sigmoid(float v) { return 1.0f / (1.0f + EXPF(-v)); }

/* Thread-strided copy of n floats from global into local memory. */
DEVICE_FN void load_floats(LOCAL float* dst, GLOBAL const float* src, int n) {
    NO_UNROLL
    for (int i = LID; i < n; i += GROUP_SIZE) dst[i] = src[i];
}

/* The training images as a kernel receives them: the data set's bytes, read through the exact
 * pixel table (Dataset.pixelTable: 47 MB for MNIST instead of 188 MB of floats), or, for a set
 * built from floats, its floats. PIXEL(i) is value i of the images. */
#define IMAGE_ARGS GLOBAL const u8 *image_bytes, GLOBAL const float *image_floats, GLOBAL const float *pixel_table, int from_bytes
#define IMAGE_VALUES image_bytes, image_floats, pixel_table, from_bytes
#define PIXEL(i) (from_bytes ? pixel_table[image_bytes[i]] : image_floats[i])

/* Sample `sample`'s image into local memory. */
DEVICE_FN void load_image(LOCAL float* dst, IMAGE_ARGS, long sample) {
    NO_UNROLL
    for (int i = LID; i < PIXELS; i += GROUP_SIZE) dst[i] = PIXEL(sample * PIXELS + i);
}

/* c1 (SPEC forward): work-item t computes the outputs t, t + G, ... of the 6x24x24 map,
 * each a 25-term sum, kernel column outer, kernel row inner, bias after. */
DEVICE_FN void conv_forward_c1_items(LOCAL const float* p, LOCAL const float* in, LOCAL float* c1) {
    NO_UNROLL
    for (int i = LID; i < C1_SIZE; i += GROUP_SIZE) {
        int c = i / MAP1, y = (i / H1) % H1, x = i % H1;
        float sum = 0.0f;
        for (int kc = 0; kc < K1; ++kc)
            for (int kr = 0; kr < K1; ++kr)
                sum += p[OFF_C1W + (c * K1 + kr) * K1 + kc] * in[(y + kr) * IMG + x + kc];
        c1[i] = sigmoid(sum + p[OFF_C1B + c]);
    }
}

/* s1: work-item t < 216 computes one subsampling output from a 4x4 window (stride 4). */
DEVICE_FN void subsample_forward_s1_items(LOCAL const float* p, LOCAL const float* c1, LOCAL float* s1) {
    NO_UNROLL
    for (int i = LID; i < S1_SIZE; i += GROUP_SIZE) {
        int c = i / (H2 * H2), y = (i / H2) % H2, x = i % H2;
        float sum = 0.0f;
        for (int kc = 0; kc < K2; ++kc)
            for (int kr = 0; kr < K2; ++kr)
                sum += p[OFF_S1W + kr * K2 + kc] * c1[(c * H1 + K2 * y + kr) * H1 + K2 * x + kc];
        s1[i] = sigmoid(sum + p[OFF_S1B]);
    }
}

/* f: work-item o < 10 computes output o (input column slowest, row, channel fastest). The modern
 * recipe's softmax is then taken by work-item 0 over the ten logits. */
DEVICE_FN void dense_forward_f_items(LOCAL const float* p, LOCAL const float* s1, LOCAL float* out, int modern) {
    if (LID < CLASSES) {
        int o = LID;
        float sum = 0.0f;
        NO_UNROLL
        for (int x = 0; x < H2; ++x)
            for (int y = 0; y < H2; ++y)
                for (int c = 0; c < CH; ++c) {
                    int i = (c * H2 + y) * H2 + x;
                    sum += p[OFF_FW + o * S1_SIZE + i] * s1[i];
                }
        out[o] = modern ? sum + p[OFF_FB + o] : sigmoid(sum + p[OFF_FB + o]);
    }
    BARRIER();
    if (modern && LID == 0) {
        float largest = out[0];
        for (int o = 1; o < CLASSES; ++o) if (out[o] > largest) largest = out[o];
        float total = 0.0f;
        for (int o = 0; o < CLASSES; ++o) { out[o] = EXPF(out[o] - largest); total += out[o]; }
        for (int o = 0; o < CLASSES; ++o) out[o] /= total;
    }
}

/* The whole forward pass; ends with a barrier so every work-item sees the outputs. */
DEVICE_FN void forward(LOCAL const float* p, LOCAL const float* in, LOCAL float* c1, LOCAL float* s1,
                       LOCAL float* out, int modern) {
    conv_forward_c1_items(p, in, c1);
    BARRIER();
    subsample_forward_s1_items(p, c1, s1);
    BARRIER();
    dense_forward_f_items(p, s1, out, modern);
    BARRIER();
}

/* Argmax with strict < (ties go to the lower class). */
DEVICE_FN int predicted_class(LOCAL const float* out) {
    int best = 0;
    for (int o = 1; o < CLASSES; ++o) if (out[best] < out[o]) best = o;
    return best;
}

/* Work-item 0 only: the output error (target - output, no output derivative), the sample's loss
 * (original: sqrt of the sum of squared errors; modern: cross-entropy) and whether it was
 * misclassified, stored at position pos of the epoch's statistics. */
DEVICE_FN void output_error(LOCAL const float* out, LOCAL float* err, int label, int modern,
                            GLOBAL float* losses, GLOBAL u8* wrong, int pos) {
    float squares = 0.0f;
    for (int o = 0; o < CLASSES; ++o) {
        err[o] = (o == label ? 1.0f : 0.0f) - out[o];
        squares += err[o] * err[o];
    }
    losses[pos] = modern ? -LOGF(out[label]) : SQRTF(squares);
    wrong[pos] = (u8)(predicted_class(out) != label);
}

/* Steps 4-5: work-item t < 216 computes the error at one s1 output through the f weights as they
 * were before this step, times the recomputed sigmoid derivative (left to right). */
DEVICE_FN void dense_backward_input_f_items(LOCAL const float* p, LOCAL const float* s1, LOCAL const float* err, LOCAL float* s1e) {
    NO_UNROLL
    for (int i = LID; i < S1_SIZE; i += GROUP_SIZE) {
        float sum = 0.0f;
        for (int o = 0; o < CLASSES; ++o) sum += p[OFF_FW + o * S1_SIZE + i] * err[o];
        float o1 = s1[i];
        s1e[i] = sum * o1 * (1.0f - o1);
    }
}

/* Step 6 for one s1 weight k (one work-item): 216 terms, input column slowest, row, channel fastest. */
DEVICE_FN float subsample_backward_s1_term(LOCAL const float* s1e, LOCAL const float* c1, int k) {
    int kr = k / K2, kc = k % K2;
    float sum = 0.0f;
    NO_UNROLL
    for (int x = 0; x < H2; ++x)
        for (int y = 0; y < H2; ++y)
            for (int c = 0; c < CH; ++c)
                sum += s1e[(c * H2 + y) * H2 + x] * c1[(c * H1 + K2 * y + kr) * H1 + K2 * x + kc];
    return sum;
}

/* Steps 7-8, in place: work-item t turns the c1 outputs t, t + G, ... into c1 errors, through the
 * s1 weights as they were before this step. Call only after every reader of the c1 outputs. */
DEVICE_FN void subsample_backward_input_s1_items(LOCAL const float* p, LOCAL const float* s1e, LOCAL float* c1) {
    NO_UNROLL
    for (int i = LID; i < C1_SIZE; i += GROUP_SIZE) {
        int c = i / MAP1, y = (i / H1) % H1, x = i % H1;
        float upstream = p[OFF_S1W + (y % K2) * K2 + x % K2] * s1e[(c * H2 + y / K2) * H2 + x / K2];
        float o1 = c1[i];
        c1[i] = upstream * o1 * (1.0f - o1);
    }
}

/* Step 9 for one c1 weight j = (c, kr, kc) (one work-item): 576 terms over the map column-major
 * (x slowest, y fastest), each divided by the recipe's divisor. */
DEVICE_FN float conv_backward_c1_term(LOCAL const float* c1e, LOCAL const float* in, int j, float divisor) {
    int c = j / (K1 * K1), kr = (j / K1) % K1, kc = j % K1;
    float sum = 0.0f;
    NO_UNROLL
    for (int x = 0; x < H1; ++x)
        for (int y = 0; y < H1; ++y)
            sum += c1e[(c * H1 + y) * H1 + x] * in[(y + kr) * IMG + x + kc] / divisor;
    return sum;
}
