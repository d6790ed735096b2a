/* The passes of a described network that are not a layer's, on the device: the input, the
 * output rule, and the update. NetworkKernels defines NET_INPUT (floats per image),
 * NET_CLASSES and NET_PARAMS in front of it. Semantics: ReferenceNetwork and ReferenceEngine. */

/* Layer 0's input for `count` samples: sample order[pos + s] of the training set, from its
 * bytes through the exact pixel table (Dataset.pixelTable), or from its floats. */
DEVICE_FN void input_gather_items(GLOBAL const u8* bytes, GLOBAL const float* floats, GLOBAL const float* pixel_table,
                                  int from_bytes, GLOBAL const int* order, int pos, GLOBAL float* x, int count, int first,
                                  int step) {
    NO_UNROLL
    for (int t = first; t < count * NET_INPUT; t += step) {
        int s = t / NET_INPUT, i = t - s * NET_INPUT;
        long source = (long)order[pos + s] * NET_INPUT + i;
        x[t] = from_bytes ? pixel_table[bytes[source]] : floats[source];
    }
}

KERNEL input_gather(GLOBAL const u8* bytes, GLOBAL const float* floats, GLOBAL const float* pixel_table, int from_bytes,
                    GLOBAL const int* order, int pos, GLOBAL float* x, int count) {
    input_gather_items(bytes, floats, pixel_table, from_bytes, order, pos, x, count, GLOBAL_ID, GLOBAL_SIZE);
}

/* The recipe's output rule on the last layer's outputs z: sigmoid (original) or softmax
 * (modern). Each value is computed where it is used, from the softmax's largest input and total
 * (no private array: PoCL's persistent kernels mishandle one). */
typedef struct {
    float largest, total;
} softmax_sums;

DEVICE_FN softmax_sums output_sums(GLOBAL const float* z, int modern) {
    softmax_sums sums = {z[0], 0.0f};
    if (!modern) return sums;
    for (int o = 1; o < NET_CLASSES; ++o)
        if (z[o] > sums.largest) sums.largest = z[o];
    for (int o = 0; o < NET_CLASSES; ++o) sums.total += EXPF(z[o] - sums.largest);
    return sums;
}

DEVICE_FN float output_value(GLOBAL const float* z, int o, int modern, softmax_sums sums) {
    return modern ? EXPF(z[o] - sums.largest) / sums.total : 1.0f / (1.0f + EXPF(-z[o]));
}

/* The class with the largest output value (ties to the lower class). */
DEVICE_FN int output_class(GLOBAL const float* z, int modern, softmax_sums sums) {
    int best = 0;
    float best_value = output_value(z, 0, modern, sums);
    for (int o = 1; o < NET_CLASSES; ++o) {
        float v = output_value(z, o, modern, sums);
        if (best_value < v) {
            best = o;
            best_value = v;
        }
    }
    return best;
}

/* Per sample: the output error delta = onehot(label) - out at the last layer, the loss (SPEC's
 * sqrt(sum delta^2), or -log p[label]) and whether the prediction was wrong, at position pos + s. */
DEVICE_FN void output_backward_items(GLOBAL const float* z, GLOBAL float* delta, GLOBAL const u8* labels, GLOBAL const int* order,
                                     int pos, int count, int modern, GLOBAL float* losses, GLOBAL u8* wrong, int first, int step) {
    for (int s = first; s < count; s += step) {
        GLOBAL const float* zs = z + s * NET_CLASSES;
        softmax_sums sums = output_sums(zs, modern);
        int label = labels[order[pos + s]];
        float squares = 0.0f;
        for (int o = 0; o < NET_CLASSES; ++o) {
            float d = (o == label ? 1.0f : 0.0f) - output_value(zs, o, modern, sums);
            delta[s * NET_CLASSES + o] = d;
            squares += d * d;
        }
        losses[pos + s] = modern ? -LOGF(output_value(zs, label, modern, sums)) : SQRTF(squares);
        wrong[pos + s] = (u8)(output_class(zs, modern, sums) != label);
    }
}

KERNEL output_backward(GLOBAL const float* z, int z_off, GLOBAL float* delta, int delta_off, GLOBAL const u8* labels,
                       GLOBAL const int* order, int pos, int count, int modern, GLOBAL float* losses, GLOBAL u8* wrong) {
    output_backward_items(z + z_off, delta + delta_off, labels, order, pos, count, modern, losses, wrong, GLOBAL_ID, GLOBAL_SIZE);
}

KERNEL output_predict(GLOBAL const float* z, int z_off, int count, int modern, GLOBAL u8* classes) {
    for (int s = GLOBAL_ID; s < count; s += GLOBAL_SIZE) {
        GLOBAL const float* zs = z + z_off + s * NET_CLASSES;
        classes[s] = (u8)output_class(zs, modern, output_sums(zs, modern));
    }
}

/* UpdateRule's step over the summed ascent grads of `batch` samples, g = scale * grads / batch:
 * SGD v = mu v + g, p += lr v; Adam m = b1 m + (1 - b1) g, s = b2 s + (1 - b2) g g,
 * p += step_size m / (sqrt(s) c + eps). Buffers below UpdateRule.bufferFlushThreshold become 0. */
DEVICE_FN float flushed(float v) { return FABSF(v) < 1e-30f ? 0.0f : v; }

DEVICE_FN void network_update_items(GLOBAL float* params, GLOBAL float* velocity, GLOBAL float* second, GLOBAL const float* grads,
                                    GLOBAL const float* scale, float batch, int adam, float lr, float momentum, float beta2,
                                    float epsilon, float step_size, float second_moment_factor, int first, int step) {
    NO_UNROLL
    for (int j = first; j < NET_PARAMS; j += step) {
        float g = scale[j] * grads[j] / batch;
        if (adam) {
            float m = flushed(momentum * velocity[j] + (1.0f - momentum) * g);
            float s = flushed(beta2 * second[j] + (1.0f - beta2) * g * g);
            velocity[j] = m;
            second[j] = s;
            params[j] += step_size * m / (SQRTF(s) * second_moment_factor + epsilon);
        } else {
            float v = flushed(momentum * velocity[j] + g);
            velocity[j] = v;
            params[j] += lr * v;
        }
    }
}

KERNEL network_update(GLOBAL float* params, GLOBAL float* velocity, GLOBAL float* second, GLOBAL const float* grads,
                      GLOBAL const float* scale, float batch, int adam, float lr, float momentum, float beta2, float epsilon,
                      float step_size, float second_moment_factor) {
    network_update_items(params, velocity, second, grads, scale, batch, adam, lr, momentum, beta2, epsilon, step_size,
                         second_moment_factor, GLOBAL_ID, GLOBAL_SIZE);
}
