/* A layer's parameter gradient on the device, pasted after every layer with parameters:
 * parameter j of the layer (its N_WEIGHTS weights, then its N_BIASES biases, stored from W_OFF
 * on) sums TYPED(gradient_term) over TERMS_PER_SAMPLE terms of each of `count` samples. No float
 * atomics: every sum has one fixed order, so a run repeats bit for bit. `accumulate` adds the
 * sum to grad (later samples of a step) instead of storing it. */
#define N_LAYER_PARAMS (N_WEIGHTS + N_BIASES)

/* One work-item per parameter, its terms in order: for few terms per parameter (a dense
 * layer's, or one sample's in the persistent kernel). */
DEVICE_FN void TYPED(backward_items)(GLOBAL const float* x, GLOBAL const float* dy, GLOBAL float* grad, int count, int accumulate,
                                     int first, int step) {
    NO_UNROLL
    for (int j = first; j < N_LAYER_PARAMS; j += step) {
        float sum = 0.0f;
        NO_UNROLL
        for (int t = 0; t < count * TERMS_PER_SAMPLE; ++t) sum += TYPED(gradient_term)(x, dy, j, t);
        grad[W_OFF + j] = accumulate ? grad[W_OFF + j] + sum : sum;
    }
}

/* One work-group per parameter: work-item i sums terms i, i + GROUP_SIZE, ..., then group_sum
 * adds the partial sums in its fixed tree order (a convolution's thousands of terms). */
KERNEL TYPED(backward)(GLOBAL const float* x, int x_off, GLOBAL const float* dy, int dy_off, GLOBAL float* grad, int count,
                       int accumulate) {
    SHARED(float, scratch, GROUP_SIZE);
    NO_UNROLL
    for (int j = GID; j < N_LAYER_PARAMS; j += NUM_GROUPS) {
        float partial = 0.0f;
        NO_UNROLL
        for (int t = LID; t < count * TERMS_PER_SAMPLE; t += GROUP_SIZE) partial += TYPED(gradient_term)(x + x_off, dy + dy_off, j, t);
        float total = group_sum(partial, scratch);
        if (LID == 0) grad[W_OFF + j] = accumulate ? grad[W_OFF + j] + total : total;
    }
}

KERNEL TYPED(backward_serial)(GLOBAL const float* x, int x_off, GLOBAL const float* dy, int dy_off, GLOBAL float* grad,
                              int count, int accumulate) {
    TYPED(backward_items)(x + x_off, dy + dy_off, grad, count, accumulate, GLOBAL_ID, GLOBAL_SIZE);
}

#undef N_LAYER_PARAMS
#undef TERMS_PER_SAMPLE
