/* The fused strategy: one work-group owns a whole sample (its activations live in local memory)
 * and runs every layer of the forward and backward pass without leaving the kernel. */

/* One sample's forward pass, output error and s1 error, all in local memory; ends with a barrier. */
DEVICE_FN void sample_errors(LOCAL const float* p, LOCAL const float* in, LOCAL float* c1, LOCAL float* s1,
                             LOCAL float* s1e, LOCAL float* out, LOCAL float* err, int label, int modern,
                             GLOBAL float* losses, GLOBAL u8* wrong, int pos) {
    forward(p, in, c1, s1, out, modern);
    if (LID == 0) output_error(out, err, label, modern, losses, wrong, pos);
    BARRIER();
    dense_backward_input_f_items(p, s1, err, s1e);
    BARRIER();
}

/* `start` plus the s1 bias terms `factor * δ / divisor`, added one at a time (input column slowest,
 * row, channel fastest). Per-sample SGD starts from the bias with factor dt, as the SPEC adds each
 * term to it; a batch's gradient starts from 0 with factor 1 (1 · δ is δ exactly). */
DEVICE_FN float s1_bias_terms(LOCAL const float* s1e, float start, float factor, float divisor) {
    float sum = start;
    NO_UNROLL
    for (int x = 0; x < H2; ++x)
        for (int y = 0; y < H2; ++y)
            for (int c = 0; c < CH; ++c)
                sum += factor * s1e[(c * H2 + y) * H2 + x] / divisor;
    return sum;
}

/* The same for c1 bias `c` over its 24x24 map (x slowest, y fastest). */
DEVICE_FN float c1_bias_terms(LOCAL const float* c1, int c, float start, float factor, float divisor) {
    float sum = start;
    NO_UNROLL
    for (int x = 0; x < H1; ++x)
        for (int y = 0; y < H1; ++y)
            sum += factor * c1[(c * H1 + y) * H1 + x] / divisor;
    return sum;
}

/* Per-sample SGD, persistent: ONE work-group of GROUP_SIZE work-items keeps all 2,343 parameters
 * and one sample's activations in local memory and trains the samples order[first ..< first+count]
 * one after the other, exactly as the SPEC's program (biases updated term by term while
 * back-propagating, weights after). Launch with a grid of one group. Work-items split each layer
 * as in network.cu; the serial parts (bias terms, which the SPEC adds one at a time) go to
 * work-items that are otherwise idle at that point. */
KERNEL fused_sgd(GLOBAL float* params, IMAGE_ARGS, GLOBAL const u8* labels,
                 GLOBAL const int* order, int first, int count, GLOBAL float* losses, GLOBAL u8* wrong,
                 float dt, float c1_divisor, float s1_bias_divisor, int modern) {
    SHARED(float, p, NPARAM);
    SHARED(float, in, PIXELS);
    SHARED(float, c1, C1_SIZE);
    SHARED(float, s1, S1_SIZE);
    SHARED(float, s1e, S1_SIZE);
    SHARED(float, out, CLASSES);
    SHARED(float, err, CLASSES);
    SHARED(float, gs1, K2 * K2);
    load_floats(p, params, NPARAM);
    for (int k = 0; k < count; ++k) {
        int pos = first + k;
        int sample = order[pos];
        BARRIER();
        load_image(in, IMAGE_VALUES, sample);
        BARRIER();
        sample_errors(p, in, c1, s1, s1e, out, err, labels[sample], modern, losses, wrong, pos);
        /* Step 3 with step 10 for f (the f weights' old values were used above), and step 6. */
        NO_UNROLL
        for (int j = LID; j < CLASSES * S1_SIZE; j += GROUP_SIZE)
            p[OFF_FW + j] += dt * (err[j / S1_SIZE] * s1[j % S1_SIZE]);
        if (LID < CLASSES) p[OFF_FB + LID] += dt * err[LID];
        if (LID >= 32 && LID < 32 + K2 * K2) gs1[LID - 32] = subsample_backward_s1_term(s1e, c1, LID - 32);
        if (LID == 64) p[OFF_S1B] = s1_bias_terms(s1e, p[OFF_S1B], dt, s1_bias_divisor);
        BARRIER();
        subsample_backward_input_s1_items(p, s1e, c1);
        BARRIER();
        if (LID < K2 * K2) p[OFF_S1W + LID] += dt * gs1[LID];
        if (LID < CH * K1 * K1) {
            p[OFF_C1W + LID] += dt * conv_backward_c1_term(c1, in, LID, c1_divisor);
        } else if (LID < CH * K1 * K1 + CH) {
            int c = LID - CH * K1 * K1;
            p[OFF_C1B + c] = c1_bias_terms(c1, c, p[OFF_C1B + c], dt, c1_divisor);
        }
    }
    BARRIER();
    NO_UNROLL
    for (int i = LID; i < NPARAM; i += GROUP_SIZE) params[i] = p[i];
}

/* Minibatch, gradient half: work-group g trains sample order[first + g] of the batch from the
 * parameters as they are (read-only) and writes its raw ascent direction (the recipe's per-term
 * divisors included) to grads[g][0 ..< 2343]. Launch with one group per sample of the batch. */
KERNEL fused_batch_gradient(GLOBAL const float* params, IMAGE_ARGS, GLOBAL const u8* labels,
                            GLOBAL const int* order, int first, GLOBAL float* grads,
                            GLOBAL float* losses, GLOBAL u8* wrong,
                            float c1_divisor, float s1_bias_divisor, int modern) {
    SHARED(float, p, NPARAM);
    SHARED(float, in, PIXELS);
    SHARED(float, c1, C1_SIZE);
    SHARED(float, s1, S1_SIZE);
    SHARED(float, s1e, S1_SIZE);
    SHARED(float, out, CLASSES);
    SHARED(float, err, CLASSES);
    int pos = first + GID;
    int sample = order[pos];
    GLOBAL float* g = grads + (long)GID * NPARAM;
    load_floats(p, params, NPARAM);
    load_image(in, IMAGE_VALUES, sample);
    BARRIER();
    sample_errors(p, in, c1, s1, s1e, out, err, labels[sample], modern, losses, wrong, pos);
    NO_UNROLL
    for (int j = LID; j < CLASSES * S1_SIZE; j += GROUP_SIZE)
        g[OFF_FW + j] = err[j / S1_SIZE] * s1[j % S1_SIZE];
    if (LID < CLASSES) g[OFF_FB + LID] = err[LID];
    if (LID >= 32 && LID < 32 + K2 * K2) g[OFF_S1W + LID - 32] = subsample_backward_s1_term(s1e, c1, LID - 32);
    if (LID == 64) g[OFF_S1B] = s1_bias_terms(s1e, 0.0f, 1.0f, s1_bias_divisor);
    BARRIER();
    subsample_backward_input_s1_items(p, s1e, c1);
    BARRIER();
    if (LID < CH * K1 * K1) {
        g[OFF_C1W + LID] = conv_backward_c1_term(c1, in, LID, c1_divisor);
    } else if (LID < CH * K1 * K1 + CH) {
        int c = LID - CH * K1 * K1;
        g[OFF_C1B + c] = c1_bias_terms(c1, c, 0.0f, 1.0f, c1_divisor);
    }
}

/* Minibatch, update half: work-item j < 2343 owns parameter j. It sums the batch's gradients in
 * sample order (a fixed order: the result does not depend on scheduling) and divides by the batch,
 * then takes one step of the optimizer (UpdateRule). Launch with ceil(2343 / G) groups. */
DEVICE_FN float batch_mean(GLOBAL const float* grads, int batch, int j) {
    float sum = 0.0f;
    for (int b = 0; b < batch; ++b) sum += grads[(long)b * NPARAM + j];
    return sum / (float)batch;
}

/* Momentum SGD: v = momentum * v + mean, p += lr * v. */
KERNEL batch_update(GLOBAL float* params, GLOBAL float* velocity, GLOBAL const float* grads,
                    int batch, float lr, float momentum) {
    int j = GLOBAL_ID;
    if (j >= NPARAM) return;
    float v = momentum * velocity[j] + batch_mean(grads, batch, j);
    velocity[j] = v;
    params[j] += lr * v;
}

/* Adam: m = beta1 * m + (1 - beta1) * mean, s = beta2 * s + (1 - beta2) * mean^2,
 * p += step_size * m / (sqrt(s) * second_moment_factor + epsilon), with the bias corrections
 * folded into step_size and second_moment_factor on the host. */
KERNEL adam_update(GLOBAL float* params, GLOBAL float* first_moment, GLOBAL float* second_moment,
                   GLOBAL const float* grads, int batch, float beta1, float beta2, float epsilon,
                   float step_size, float second_moment_factor) {
    int j = GLOBAL_ID;
    if (j >= NPARAM) return;
    float g = batch_mean(grads, batch, j);
    float m = beta1 * first_moment[j] + (1.0f - beta1) * g;
    float s = beta2 * second_moment[j] + (1.0f - beta2) * g * g;
    first_moment[j] = m;
    second_moment[j] = s;
    params[j] += step_size * m / (SQRTF(s) * second_moment_factor + epsilon);
}

/* Prediction: work-group g loads the parameters once and classifies samples g, g + groups, ...
 * of images[0 ..< count], writing one class byte per sample. */
KERNEL fused_predict(GLOBAL const float* params, IMAGE_ARGS, int count,
                     GLOBAL u8* classes, int modern) {
    SHARED(float, p, NPARAM);
    SHARED(float, in, PIXELS);
    SHARED(float, c1, C1_SIZE);
    SHARED(float, s1, S1_SIZE);
    SHARED(float, out, CLASSES);
    load_floats(p, params, NPARAM);
    NO_UNROLL
    for (int s = GID; s < count; s += NUM_GROUPS) {
        BARRIER();
        load_image(in, IMAGE_VALUES, s);
        BARRIER();
        forward(p, in, c1, s1, out, modern);
        if (LID == 0) classes[s] = (u8)predicted_class(out);
    }
}
