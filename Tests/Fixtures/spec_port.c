/*
 * spec_port.c: an independent, literal, single-threaded C99 port of /work/shared/SPEC.md
 * (faithful semantics: original glibc rand() initialisation, file order, batch 1, dt = 0.1).
 *
 * Build: gcc -std=c99 -O2 -ffp-contract=off -fno-fast-math -o spec_port spec_port.c -lm -lz
 * Usage: spec_port DATA_DIR N
 *   DATA_DIR holds train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
 *            t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz
 *   N        number of training samples, taken in file order (60000 = one epoch)
 * Output, one per line:
 *   init <hash>
 *   trained <N> <hash>
 *   train_error <mean over samples of sqrtf(sum_o d_f[o]^2), accumulated in double, %.7e>
 *   test_errors <misclassified test images out of 10000>
 *
 * Every sum follows the SPEC's "Canonical summation order"; the compiler must not contract
 * a*b+c into an FMA (-ffp-contract=off) nor reassociate (no -ffast-math).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Shape letters (SPEC.md). */
#define C 6    /* feature maps */
#define N 28   /* input side */
#define K1 5   /* c1 kernel side */
#define H1 24  /* c1 output side */
#define K2 4   /* s1 kernel side, stride 4 */
#define H2 6   /* s1 output side */
#define O 10   /* classes */
#define I (C * H2 * H2) /* 216 f inputs */

static const float dt = 0.1f;

/* Parameters, in the SPEC's canonical order. */
static float c1_w[C][K1][K1], c1_b[C];
static float s1_w[K2][K2], s1_b;
static float f_w[O][C][H2][H2], f_b[O];

/* One sample's activations. */
static float in[N][N];
static float c1_pre[C][H1][H1], c1_out[C][H1][H1];
static float s1_pre[C][H2][H2], s1_out[C][H2][H2];
static float f_pre[O], f_out[O];

/* Backward buffers. */
static float d_f[O];
static float dW_f[O][C][H2][H2];
static float s1_dout[C][H2][H2], s1_dpre[C][H2][H2];
static float dW_s1[K2][K2];
static float c1_dout[C][H1][H1], c1_dpre[C][H1][H1];
static float dW_c1[C][K1][K1];

/* ---- data ---- */

static uint32_t be32(const unsigned char *b) {
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | (uint32_t)b[3];
}

static void read_exact(gzFile g, void *buf, unsigned len, const char *path) {
    unsigned char *p = buf;
    while (len > 0) {
        unsigned chunk = len > (1u << 30) ? (1u << 30) : len;
        int got = gzread(g, p, chunk);
        if (got <= 0) { fprintf(stderr, "spec_port: short read in %s\n", path); exit(1); }
        p += got;
        len -= (unsigned)got;
    }
}

/* Reads an IDX file; returns its payload and sets *count. */
static unsigned char *read_idx(const char *dir, const char *name, uint32_t magic, int *count) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    gzFile g = gzopen(path, "rb");
    if (!g) { fprintf(stderr, "spec_port: cannot open %s\n", path); exit(1); }
    unsigned char h[16];
    read_exact(g, h, 8, path);
    if (be32(h) != magic) { fprintf(stderr, "spec_port: bad magic in %s\n", path); exit(1); }
    uint32_t n = be32(h + 4);
    unsigned per = 1;
    if (magic == 2051) {
        read_exact(g, h + 8, 8, path);
        if (be32(h + 8) != N || be32(h + 12) != N) { fprintf(stderr, "spec_port: bad shape in %s\n", path); exit(1); }
        per = N * N;
    }
    unsigned char *data = malloc((size_t)n * per);
    if (!data) { fprintf(stderr, "spec_port: out of memory\n"); exit(1); }
    read_exact(g, data, n * per, path);
    gzclose(g);
    *count = (int)n;
    return data;
}

static void load_input(const unsigned char *img) {
    for (int r = 0; r < N; ++r)
        for (int c = 0; c < N; ++c)
            in[r][c] = (float)((double)img[r * N + c] / 255.0);
}

/* ---- init and hash ---- */

static float draw(void) { return 0.5f - (float)rand() / (float)RAND_MAX; }

static void init_original(void) {
    /* glibc rand(), default seed 1 (srand is never called). Layer by layer, per neuron bias then
       weights row-major. */
    for (int c = 0; c < C; ++c) {
        c1_b[c] = draw();
        for (int kr = 0; kr < K1; ++kr)
            for (int kc = 0; kc < K1; ++kc) c1_w[c][kr][kc] = draw();
    }
    s1_b = draw();
    for (int kr = 0; kr < K2; ++kr)
        for (int kc = 0; kc < K2; ++kc) s1_w[kr][kc] = draw();
    for (int o = 0; o < O; ++o) {
        f_b[o] = draw();
        for (int c = 0; c < C; ++c)
            for (int y = 0; y < H2; ++y)
                for (int x = 0; x < H2; ++x) f_w[o][c][y][x] = draw();
    }
}

static uint64_t fnv_bytes(uint64_t h, const float *v, int n) {
    for (int i = 0; i < n; ++i) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; ++k) { /* little-endian byte order regardless of host */
            h ^= (u >> (8 * k)) & 0xffu;
            h *= 0x100000001b3ULL;
        }
    }
    return h;
}

static uint64_t param_hash(void) {
    uint64_t h = 0xcbf29ce484222325ULL;
    h = fnv_bytes(h, &c1_w[0][0][0], C * K1 * K1);
    h = fnv_bytes(h, c1_b, C);
    h = fnv_bytes(h, &s1_w[0][0], K2 * K2);
    h = fnv_bytes(h, &s1_b, 1);
    h = fnv_bytes(h, &f_w[0][0][0][0], O * I);
    h = fnv_bytes(h, f_b, O);
    return h;
}

/* ---- forward ---- */

static float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

static void forward(void) {
    /* c1: kernel column outer, kernel row inner; bias after the sum. */
    for (int c = 0; c < C; ++c)
        for (int y = 0; y < H1; ++y)
            for (int x = 0; x < H1; ++x) {
                float sum = 0.0f;
                for (int kc = 0; kc < K1; ++kc)
                    for (int kr = 0; kr < K1; ++kr) sum += c1_w[c][kr][kc] * in[y + kr][x + kc];
                c1_pre[c][y][x] = sum + c1_b[c];
                c1_out[c][y][x] = sigmoid(c1_pre[c][y][x]);
            }
    /* s1: one shared 4x4 kernel, stride 4; kernel column outer, kernel row inner; bias after. */
    for (int c = 0; c < C; ++c)
        for (int y = 0; y < H2; ++y)
            for (int x = 0; x < H2; ++x) {
                float sum = 0.0f;
                for (int kc = 0; kc < K2; ++kc)
                    for (int kr = 0; kr < K2; ++kr) sum += s1_w[kr][kc] * c1_out[c][K2 * y + kr][K2 * x + kc];
                s1_pre[c][y][x] = sum + s1_b;
                s1_out[c][y][x] = sigmoid(s1_pre[c][y][x]);
            }
    /* f: input column slowest, then row, then channel fastest; bias after. */
    for (int o = 0; o < O; ++o) {
        float sum = 0.0f;
        for (int x = 0; x < H2; ++x)
            for (int y = 0; y < H2; ++y)
                for (int c = 0; c < C; ++c) sum += f_w[o][c][y][x] * s1_out[c][y][x];
        f_pre[o] = sum + f_b[o];
        f_out[o] = sigmoid(f_pre[o]);
    }
}

static int predicted(void) {
    int best = 0;
    for (int o = 1; o < O; ++o)
        if (f_out[best] < f_out[o]) best = o;
    return best;
}

/* ---- one training step; returns sqrtf(sum of squares of d_f) ---- */

static float train_step(int label) {
    forward();                                                    /* 1 */

    for (int o = 0; o < O; ++o) d_f[o] = (o == label ? 1.0f : 0.0f) - f_out[o]; /* 2 */
    float sq = 0.0f;
    for (int o = 0; o < O; ++o) sq += d_f[o] * d_f[o];
    float err = sqrtf(sq);

    /* 3: f weight gradient, then at once the f bias. */
    for (int o = 0; o < O; ++o)
        for (int c = 0; c < C; ++c)
            for (int y = 0; y < H2; ++y)
                for (int x = 0; x < H2; ++x) dW_f[o][c][y][x] = d_f[o] * s1_out[c][y][x];
    for (int o = 0; o < O; ++o) f_b[o] += dt * d_f[o];

    /* 4: s1.dout with f weights before the update, o = 0..9. 5: s1.dpre. */
    for (int c = 0; c < C; ++c)
        for (int y = 0; y < H2; ++y)
            for (int x = 0; x < H2; ++x) {
                float sum = 0.0f;
                for (int o = 0; o < O; ++o) sum += f_w[o][c][y][x] * d_f[o];
                s1_dout[c][y][x] = sum;
                float oo = sigmoid(s1_pre[c][y][x]);
                s1_dpre[c][y][x] = s1_dout[c][y][x] * oo * (1.0f - oo);
            }

    /* 6: s1 weight gradient (not divided): column slowest, row, channel fastest. */
    for (int kr = 0; kr < K2; ++kr)
        for (int kc = 0; kc < K2; ++kc) {
            float sum = 0.0f;
            for (int x = 0; x < H2; ++x)
                for (int y = 0; y < H2; ++y)
                    for (int c = 0; c < C; ++c) sum += s1_dpre[c][y][x] * c1_out[c][K2 * y + kr][K2 * x + kc];
            dW_s1[kr][kc] = sum;
        }
    /* s1 bias: 216 terms dt*dpre/216 added one at a time, same order. */
    for (int x = 0; x < H2; ++x)
        for (int y = 0; y < H2; ++y)
            for (int c = 0; c < C; ++c) s1_b += dt * s1_dpre[c][y][x] / (float)I;

    /* 7: c1.dout with s1 weights before the update. 8: c1.dpre. */
    for (int c = 0; c < C; ++c)
        for (int y = 0; y < H1; ++y)
            for (int x = 0; x < H1; ++x) {
                c1_dout[c][y][x] = s1_w[y % K2][x % K2] * s1_dpre[c][y / K2][x / K2];
                float oo = sigmoid(c1_pre[c][y][x]);
                c1_dpre[c][y][x] = c1_dout[c][y][x] * oo * (1.0f - oo);
            }

    /* 9: c1 weight gradient, map column-major (x slowest, y fastest), each term divided by 576. */
    for (int c = 0; c < C; ++c)
        for (int kr = 0; kr < K1; ++kr)
            for (int kc = 0; kc < K1; ++kc) {
                float sum = 0.0f;
                for (int x = 0; x < H1; ++x)
                    for (int y = 0; y < H1; ++y)
                        sum += (c1_dpre[c][y][x] * in[y + kr][x + kc]) / (float)(H1 * H1);
                dW_c1[c][kr][kc] = sum;
            }
    /* c1 bias: x, then y, then channel innermost; dt*dpre/576 added term by term. */
    for (int x = 0; x < H1; ++x)
        for (int y = 0; y < H1; ++y)
            for (int c = 0; c < C; ++c) c1_b[c] += dt * c1_dpre[c][y][x] / (float)(H1 * H1);

    /* 10: w += dt * dW, f then s1 then c1. */
    for (int o = 0; o < O; ++o)
        for (int c = 0; c < C; ++c)
            for (int y = 0; y < H2; ++y)
                for (int x = 0; x < H2; ++x) f_w[o][c][y][x] += dt * dW_f[o][c][y][x];
    for (int kr = 0; kr < K2; ++kr)
        for (int kc = 0; kc < K2; ++kc) s1_w[kr][kc] += dt * dW_s1[kr][kc];
    for (int c = 0; c < C; ++c)
        for (int kr = 0; kr < K1; ++kr)
            for (int kc = 0; kc < K1; ++kc) c1_w[c][kr][kc] += dt * dW_c1[c][kr][kc];

    return err;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s DATA_DIR N\n", argv[0]); return 2; }
    const char *dir = argv[1];
    int n_train = atoi(argv[2]);

    int ntr, ntrl, nte, ntel;
    unsigned char *tr_img = read_idx(dir, "train-images-idx3-ubyte.gz", 2051, &ntr);
    unsigned char *tr_lab = read_idx(dir, "train-labels-idx1-ubyte.gz", 2049, &ntrl);
    unsigned char *te_img = read_idx(dir, "t10k-images-idx3-ubyte.gz", 2051, &nte);
    unsigned char *te_lab = read_idx(dir, "t10k-labels-idx1-ubyte.gz", 2049, &ntel);
    if (ntr != ntrl || nte != ntel || n_train < 0 || n_train > ntr) {
        fprintf(stderr, "spec_port: bad counts\n");
        return 1;
    }

    init_original();
    printf("init %016llx\n", (unsigned long long)param_hash());

    double err_sum = 0.0;
    for (int s = 0; s < n_train; ++s) {
        load_input(tr_img + (size_t)s * N * N);
        err_sum += (double)train_step(tr_lab[s]);
    }
    printf("trained %d %016llx\n", n_train, (unsigned long long)param_hash());
    printf("train_error %.7e\n", n_train > 0 ? err_sum / n_train : 0.0);

    int wrong = 0;
    for (int s = 0; s < nte; ++s) {
        load_input(te_img + (size_t)s * N * N);
        forward();
        if (predicted() != te_lab[s]) ++wrong;
    }
    printf("test_errors %d\n", wrong);
    return 0;
}
