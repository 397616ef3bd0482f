/* Row kernels of the factorised pyramid attention (panet.nn.attention), compiled on first use by panet.nn.native.

   Each works on one sample's N x L matrix, N = height * width queries in row-major order, L keys as the pyramid
   levels' row-major maps side by side (level l: lh[l] x lw[l]). The "diagonal row sum" of a matrix M is
       diag(M)[(y, x), (ly, lx)] = M[(y, x), (ly, lx)] + M[(y-1, x), (ly-1, lx)] + M[(y+1, x), (ly+1, lx)]
   with terms outside the query map or the key's level left out: the vertical half of a 3x3 patch sum. PyTorch
   runs it as a copy and ten shifted adds over the whole matrix, then the softmax in three more passes; here one
   query row at a time, in a buffer that stays in the L1 cache. The query rows are shared out over the OpenMP
   threads of the library that PyTorch itself loaded (its libgomp), so no second thread pool spins against it.

   Everything is fp32; the results equal PyTorch's to float rounding (exp is a degree-6 polynomial, ~1 ulp). */

#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define LANES 16
#define MAX_LEVELS 32

typedef struct {
    int height, width, n_keys, levels;
    int lh[MAX_LEVELS], lw[MAX_LEVELS];
} Layout;

static int layout(Layout *g, int height, int width, int n_keys, int levels, const int *lh, const int *lw) {
    if (levels < 1 || levels > MAX_LEVELS || height < 1 || width < 1) return 1;
    long total = 0;
    for (int l = 0; l < levels; l++) {
        g->lh[l] = lh[l];
        g->lw[l] = lw[l];
        total += (long)lh[l] * lw[l];
    }
    if (total != n_keys) return 2;
    g->height = height;
    g->width = width;
    g->n_keys = n_keys;
    g->levels = levels;
    return 0;
}

/* bf16 (uint16 storage) widened exactly to fp32 */
static inline float from_bf16(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float from_f32(float f) { return f; }

/* NAME(g, src, p, out): out = diag(src)[p] in fp32, for a src of TYPE read through LOAD */
#define DIAGONAL_ROW(NAME, TYPE, LOAD)                                                         \
    static void NAME(const Layout *g, const TYPE *src, long p, float *restrict out) {          \
        const long L = g->n_keys;                                                              \
        const long y = p / g->width;                                                           \
        const TYPE *centre = src + p * L;                                                      \
        const TYPE *up = y > 0 ? centre - (long)g->width * L : NULL;                           \
        const TYPE *down = y < g->height - 1 ? centre + (long)g->width * L : NULL;             \
        for (long k = 0; k < L; k++) out[k] = LOAD(centre[k]);                                 \
        long start = 0;                                                                        \
        for (int l = 0; l < g->levels; l++) {                                                  \
            const long wl = g->lw[l], size = (long)g->lh[l] * wl;                              \
            if (up) {                                                                          \
                float *restrict o = out + start + wl;                                          \
                const TYPE *restrict a = up + start;                                           \
                for (long k = 0; k < size - wl; k++) o[k] += LOAD(a[k]);                       \
            }                                                                                  \
            if (down) {                                                                        \
                float *restrict o = out + start;                                               \
                const TYPE *restrict a = down + start + wl;                                    \
                for (long k = 0; k < size - wl; k++) o[k] += LOAD(a[k]);                       \
            }                                                                                  \
            start += size;                                                                     \
        }                                                                                      \
    }

DIAGONAL_ROW(diagonal_row, float, from_f32)
DIAGONAL_ROW(diagonal_row_bf16, uint16_t, from_bf16)

static inline float exp_poly(float x) {
    /* e^x for x <= 0 (softmax arguments): 2^n e^z, n = round(x / ln 2), |z| <= ln 2 / 2, Taylor to z^6 */
    x = x < -87.0f ? -87.0f : x;
    const float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
    const float z = x - n * 0.693145752f - n * 1.42860677e-06f;
    const float p =
        1.0f + z * (1.0f + z * (0.5f + z * (0.166666672f + z * (0.0416666679f + z * (0.00833333377f + z * 0.00138888892f)))));
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline uint16_t to_bf16(float f) { /* round to nearest even, as torch's .to(torch.bfloat16) */
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return (uint16_t)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

static void share(long n, long *p0, long *p1) {
#ifdef _OPENMP
    const long t = omp_get_thread_num(), count = omp_get_num_threads();
#else
    const long t = 0, count = 1;
#endif
    *p0 = n * t / count;
    *p1 = n * (t + 1) / count;
}

static float *row_buffer(long n) { return (float *)aligned_alloc(64, ((sizeof(float) * n + 63) / 64) * 64); }

/* probs[p] = softmax(diag(scores)[p] * inv_norm) for every query row p */
int panet_softmax_rows(const float *scores, const float *inv_norm, float *probs, int height, int width, int n_keys,
                       int levels, const int *lh, const int *lw, int threads) {
    Layout g;
    int bad = layout(&g, height, width, n_keys, levels, lh, lw);
    if (bad) return bad;
    int failed = 0;
#pragma omp parallel num_threads(threads > 0 ? threads : 1)
    {
        const long L = n_keys;
        long p0, p1;
        share((long)height * width, &p0, &p1);
        float *row = row_buffer(L);
        if (!row) {
#pragma omp atomic write
            failed = 3;
        } else {
            for (long p = p0; p < p1; p++) {
                diagonal_row(&g, scores, p, row);
                float lanes[LANES], mx = -FLT_MAX;
                for (int i = 0; i < LANES; i++) lanes[i] = -FLT_MAX;
                long k = 0;
                for (; k + LANES <= L; k += LANES)
                    for (int i = 0; i < LANES; i++) {
                        const float v = row[k + i] * inv_norm[k + i];
                        row[k + i] = v;
                        lanes[i] = v > lanes[i] ? v : lanes[i];
                    }
                for (; k < L; k++) {
                    row[k] *= inv_norm[k];
                    mx = row[k] > mx ? row[k] : mx;
                }
                for (int i = 0; i < LANES; i++) mx = lanes[i] > mx ? lanes[i] : mx;
                float sum = 0.0f;
                for (int i = 0; i < LANES; i++) lanes[i] = 0.0f;
                for (k = 0; k + LANES <= L; k += LANES)
                    for (int i = 0; i < LANES; i++) {
                        const float e = exp_poly(row[k + i] - mx);
                        row[k + i] = e;
                        lanes[i] += e;
                    }
                for (; k < L; k++) {
                    row[k] = exp_poly(row[k] - mx);
                    sum += row[k];
                }
                for (int i = 0; i < LANES; i++) sum += lanes[i];
                const float inv = 1.0f / sum;
                float *restrict out = probs + p * L;
                for (k = 0; k < L; k++) out[k] = row[k] * inv;
            }
            free(row);
        }
    }
    return failed;
}

/* dst = diag(src), fp32 (bf16 = 0) or bf16 (bf16 = 1, uint16 storage) */
int panet_diagonal_rows(const float *src, void *dst, int bf16, int height, int width, int n_keys, int levels,
                        const int *lh, const int *lw, int threads) {
    Layout g;
    int bad = layout(&g, height, width, n_keys, levels, lh, lw);
    if (bad) return bad;
    int failed = 0;
#pragma omp parallel num_threads(threads > 0 ? threads : 1)
    {
        const long L = n_keys;
        long p0, p1;
        share((long)height * width, &p0, &p1);
        float *row = bf16 ? row_buffer(L) : NULL;
        if (bf16 && !row) {
#pragma omp atomic write
            failed = 3;
        } else {
            for (long p = p0; p < p1; p++) {
                if (bf16) {
                    diagonal_row(&g, src, p, row);
                    uint16_t *restrict out = (uint16_t *)dst + p * L;
                    for (long k = 0; k < L; k++) out[k] = to_bf16(row[k]);
                } else {
                    diagonal_row(&g, src, p, (float *)dst + p * L);
                }
            }
            free(row);
        }
    }
    return failed;
}

/* The softmax's backward for S = diag(scores) * inv_norm, P = softmax(S) (probs), dP = diag(d_weights):
   dS = P * (dP - rowsum(P * dP)); d_scaled = dS * inv_norm (row by row, fp32);
   d_norm = -colsum(S * dS) * inv_norm (the gradient for the key norms, which divide S).
   d_weights is fp32, or bf16 (uint16 storage) with d_weights_bf16 = 1: the product of bf16 GEMMs, read as is. */
int panet_softmax_backward_rows(const float *scores, const float *inv_norm, const float *probs, const void *d_weights,
                                int d_weights_bf16, float *d_scaled, float *d_norm, int height, int width, int n_keys,
                                int levels, const int *lh, const int *lw, int threads) {
    Layout g;
    int bad = layout(&g, height, width, n_keys, levels, lh, lw);
    if (bad) return bad;
    if (threads < 1) threads = 1;
    const long L = n_keys;
    float *columns = (float *)calloc((size_t)threads * L, sizeof(float));
    if (!columns) return 3;
    int failed = 0, used = 1;
#pragma omp parallel num_threads(threads)
    {
        long p0, p1;
        share((long)height * width, &p0, &p1);
#ifdef _OPENMP
        float *restrict column = columns + (long)omp_get_thread_num() * L;
#pragma omp single
        used = omp_get_num_threads();
#else
        float *restrict column = columns;
#endif
        float *dp = row_buffer(L), *s = row_buffer(L);
        if (!dp || !s) {
#pragma omp atomic write
            failed = 3;
        } else {
            for (long p = p0; p < p1; p++) {
                if (d_weights_bf16)
                    diagonal_row_bf16(&g, (const uint16_t *)d_weights, p, dp);
                else
                    diagonal_row(&g, (const float *)d_weights, p, dp);
                diagonal_row(&g, scores, p, s);
                const float *restrict prob = probs + p * L;
                float lanes[LANES], dot = 0.0f;
                for (int i = 0; i < LANES; i++) lanes[i] = 0.0f;
                long k = 0;
                for (; k + LANES <= L; k += LANES)
                    for (int i = 0; i < LANES; i++) lanes[i] += prob[k + i] * dp[k + i];
                for (; k < L; k++) dot += prob[k] * dp[k];
                for (int i = 0; i < LANES; i++) dot += lanes[i];
                float *restrict out = d_scaled + p * L;
                for (k = 0; k < L; k++) {
                    const float ds = prob[k] * (dp[k] - dot);
                    column[k] += s[k] * inv_norm[k] * ds;
                    out[k] = ds * inv_norm[k];
                }
            }
        }
        free(dp);
        free(s);
    }
    if (!failed)
        for (long k = 0; k < L; k++) {
            float total = 0.0f;
            for (int t = 0; t < used; t++) total += columns[(long)t * L + k];
            d_norm[k] = -total * inv_norm[k];
        }
    free(columns);
    return failed;
}

/* The backward of a PReLU with one slope shared by every element, for bf16 tensors (autocast training): over n
   elements in memory order, grad_x = x > 0 ? g : slope * g (rounded to bf16 as torch rounds), and the slope's
   gradient sum(x <= 0 ? x * g : 0) accumulated in fp32. PyTorch's kernel takes ~20x the time of one pass here. */
int panet_prelu_backward_bf16(const uint16_t *x, const uint16_t *g, float slope, uint16_t *grad_x, float *grad_slope,
                              long n, int threads) {
    if (threads < 1) threads = 1;
    double total = 0.0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
        long i0, i1;
        share(n, &i0, &i1);
        float lanes[LANES];
        for (int l = 0; l < LANES; l++) lanes[l] = 0.0f;
        long i = i0;
        for (; i + LANES <= i1; i += LANES)
            for (int l = 0; l < LANES; l++) {
                const float xv = from_bf16(x[i + l]), gv = from_bf16(g[i + l]);
                const int positive = xv > 0.0f;
                grad_x[i + l] = positive ? g[i + l] : to_bf16(slope * gv);
                lanes[l] += positive ? 0.0f : xv * gv;
            }
        float rest = 0.0f;
        for (; i < i1; i++) {
            const float xv = from_bf16(x[i]), gv = from_bf16(g[i]);
            grad_x[i] = xv > 0.0f ? g[i] : to_bf16(slope * gv);
            rest += xv > 0.0f ? 0.0f : xv * gv;
        }
        for (int l = 0; l < LANES; l++) rest += lanes[l];
        total += rest;
    }
    *grad_slope = (float)total;
    return 0;
}
