/* The compiled kernels of golden.layer (golden/kernels.py explains the tables and builds this
 * file with the system C compiler at first use).
 *
 * lut_*: the fused kernel of the bit-serial model.
 *
 * For every input vector b and row tile: the packed levels of each row group and chunk
 * (idx), then per block of 16 columns, in registers: read + h = sum over groups of a table
 * row, code = min((read + h) >> k, top) (the ADC, section 4), acc += +-code << p_t (the shift-add
 * over chunks, section 6), and the int32 acc into int64 red, negated in a flipped column.
 * GCC/Clang vector extensions: the compiler maps a 16-lane int32 vector onto the machine's
 * SIMD registers. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int32_t vi32 __attribute__((vector_size(64)));
typedef int64_t vi64x16 __attribute__((vector_size(128)));
typedef double vf64x16 __attribute__((vector_size(128)));
typedef float vf32x16 __attribute__((vector_size(64)));
typedef double vf64x8 __attribute__((vector_size(64)));
typedef int64_t vi64x8 __attribute__((vector_size(64)));
typedef uint64_t vu64x8 __attribute__((vector_size(64)));

enum { OUT_I64, OUT_F64, OUT_F32 };   /* the type of red */

#define LANES 16

struct plan {
    int64_t R, g, G, E, C, T, d, k, top, ngroups;
    int64_t out, out_size, init;  /* red's type (OUT_*) and bytes; init: the first tile sets */
    const int64_t *pos, *mask;   /* [T] chunk t = (x >> pos) & mask */
    const int32_t *shift;        /* [T] p_t - base of its group */
    const int32_t *neg;          /* [T] -1 if sigma_t = -1, else 0 */
    const int64_t *start;        /* [ngroups + 1] chunks start[i] .. start[i+1] - 1 form group i, */
    const int32_t *base;         /* [ngroups]     whose int32 sum moves into red << base[i] */
};

static inline vi32 load(const int32_t *p) {
    vi32 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline vi32 adc(vi32 r, int32_t k, int32_t top, int32_t s, int32_t n) {
    /* code = min(r >> k, top), then +-code << s (n = 0 or -1: (v ^ n) - n) */
    vi32 code = r >> k;
    vi32 lt = code < top;
    code = ((code & lt) | (top & ~lt)) << s;
    return (code ^ n) - n;
}

static inline void spill(const struct plan *p, void *red, vi32 acc, const int64_t *m,
                         int32_t base, int fresh) {
    /* red[0..15] (+)= (m ? -acc : acc) << base  (m = 0 or -1), in red's type; = if fresh */
    vi64x16 a = __builtin_convertvector(acc, vi64x16), mm;
    memcpy(&mm, m, sizeof mm);
    a = ((a ^ mm) - mm) << base;
    if (p->out == OUT_I64) {
        vi64x16 r = {0};
        if (!fresh) memcpy(&r, red, sizeof r);
        r += a;
        memcpy(red, &r, sizeof r);
    } else if (p->out == OUT_F64) {
        vf64x16 r = {0};
        if (!fresh) memcpy(&r, red, sizeof r);
        r += __builtin_convertvector(a, vf64x16);
        memcpy(red, &r, sizeof r);
    } else {
        vf32x16 r = {0};
        if (!fresh) memcpy(&r, red, sizeof r);
        r += __builtin_convertvector(a, vf32x16);
        memcpy(red, &r, sizeof r);
    }
}

/* 16 x NB columns starting at column c, all chunks, the sums in NB registers; off[t * G + j]
 * are the table row offsets of this tile's group j in chunk t. */
#define BLOCK(NB, ...)                                                                      \
static inline void block##NB(const struct plan *p, const int32_t *lut, const int64_t *off,  \
                             int64_t c, char *red, const int64_t *m, int fresh) {           \
    const int32_t k = (int32_t)p->k, top = (int32_t)p->top;                                 \
    const int64_t G = p->G;                                                                 \
    for (int64_t i = 0; i < p->ngroups; i++) {                                              \
        vi32 acc0 = {0}, acc1 = {0}, acc2 = {0}, acc3 = {0};                                \
        for (int64_t t = p->start[i]; t < p->start[i + 1]; t++) {                           \
            const int32_t *row = lut + off[t * G] + c;                                      \
            vi32 r0 = load(row), r1 = {0}, r2 = {0}, r3 = {0};                              \
            if (NB > 1) r1 = load(row + 16);                                                \
            if (NB > 2) { r2 = load(row + 32); r3 = load(row + 48); }                       \
            for (int64_t j = 1; j < G; j++) {                                               \
                row = lut + off[t * G + j] + c;                                             \
                r0 += load(row);                                                            \
                if (NB > 1) r1 += load(row + 16);                                           \
                if (NB > 2) { r2 += load(row + 32); r3 += load(row + 48); }                 \
            }                                                                               \
            const int32_t s = p->shift[t], n = p->neg[t];                                   \
            acc0 += adc(r0, k, top, s, n);                                                  \
            if (NB > 1) acc1 += adc(r1, k, top, s, n);                                      \
            if (NB > 2) { acc2 += adc(r2, k, top, s, n); acc3 += adc(r3, k, top, s, n); }   \
        }                                                                                   \
        const int32_t bs = p->base[i];                                                      \
        const int64_t w = p->out_size;                                                      \
        fresh = fresh && i == 0;                                                            \
        spill(p, red + c * w, acc0, m + c, bs, fresh);                                      \
        if (NB > 1) spill(p, red + (c + 16) * w, acc1, m + c + 16, bs, fresh);              \
        if (NB > 2) {                                                                       \
            spill(p, red + (c + 32) * w, acc2, m + c + 32, bs, fresh);                      \
            spill(p, red + (c + 48) * w, acc3, m + c + 48, bs, fresh);                      \
        }                                                                                   \
    }                                                                                       \
}
BLOCK(4)
BLOCK(2)
BLOCK(1)

/* idx of one vector's tile: packed levels of every (chunk, group), as table row offsets. */
#define INDICES(NAME, TYPE)                                                                 \
static inline void NAME(const struct plan *p, const TYPE *x, int64_t *off, int64_t tile) {  \
    int64_t T = p->T, G = p->G;                                                             \
    for (int64_t i = 0; i < T * G; i++) off[i] = 0;                                         \
    for (int64_t r = 0; r < p->R; r++) {                                                    \
        int64_t v = (int64_t)x[r];                                                          \
        if (v == 0) continue;                                                               \
        int64_t j = r / p->g, sh = p->d * (r - j * p->g);                                   \
        for (int64_t t = 0; t < T; t++)                                                     \
            off[t * G + j] |= ((v >> p->pos[t]) & p->mask[t]) << sh;                        \
    }                                                                                       \
    for (int64_t t = 0; t < T; t++)                                                         \
        for (int64_t j = 0; j < G; j++)                                                     \
            off[t * G + j] = ((tile * G + j) * p->E + off[t * G + j]) * p->C;               \
}

/* 8 rows of 8-bit patterns, 1-bit levels, 8 rows per group: the 8x8 bit transpose of the
 * group's 8 bytes gives its 8 chunks' indices at once (Hacker's Delight, transpose8). */
static inline void indices_bits8(const struct plan *p, const uint8_t *x, int64_t *off,
                                 int64_t tile) {
    int64_t T = p->T, G = p->G;
    for (int64_t j = 0; j < G; j++) {
        uint64_t w;
        memcpy(&w, x + 8 * j, 8);
        uint64_t t;
        t = (w ^ (w >> 7)) & 0x00AA00AA00AA00AAULL;  w = w ^ t ^ (t << 7);
        t = (w ^ (w >> 14)) & 0x0000CCCC0000CCCCULL; w = w ^ t ^ (t << 14);
        t = (w ^ (w >> 28)) & 0x00000000F0F0F0F0ULL; w = w ^ t ^ (t << 28);
        /* byte t of w: bit i is bit t of row i (little-endian bytes) */
        for (int64_t c = 0; c < T; c++)
            off[c * G + j] = ((tile * G + j) * p->E + (int64_t)((w >> (8 * c)) & 0xFF)) * p->C;
    }
}

#define KERNEL(NAME, TYPE, INDEX)                                                           \
int NAME(int64_t B, const TYPE *rows, int64_t ldrows, int64_t k0, int64_t kt,               \
         const int32_t *lut, const struct plan *p, const int64_t *m, void *red,              \
         int64_t ldred, int64_t *off) {                                                     \
    if (p->C % LANES || p->out < OUT_I64 || p->out > OUT_F32) return -1;                    \
    for (int64_t b = 0; b < B; b++) {                                                       \
        char *rb = (char *)red + b * ldred * p->out_size;                                   \
        for (int64_t kk = 0; kk < kt; kk++) {                                               \
            INDEX(p, rows + b * ldrows + (k0 + kk) * p->R, off, kk);                        \
            const int64_t *mk = m + kk * p->C;                                              \
            int64_t c = 0;                                                                  \
            int fresh = p->init && kk == 0;                                                 \
            for (; c + 64 <= p->C; c += 64) block4(p, lut, off, c, rb, mk, fresh);          \
            for (; c + 32 <= p->C; c += 32) block2(p, lut, off, c, rb, mk, fresh);          \
            for (; c + 16 <= p->C; c += 16) block1(p, lut, off, c, rb, mk, fresh);          \
        }                                                                                   \
    }                                                                                       \
    return 0;                                                                               \
}

INDICES(indices_u8, uint8_t)
INDICES(indices_i32, int32_t)
INDICES(indices_i64, int64_t)
KERNEL(lut_u8, uint8_t, indices_u8)
KERNEL(lut_bits8, uint8_t, indices_bits8)
KERNEL(lut_i32, int32_t, indices_i32)
KERNEL(lut_i64, int64_t, indices_i64)

/* dense: the exact integer path of a small matrix layer in one call (golden.layer's matvec
 * when the ADC is the identity): out = finalize(x @ w + bias), the sums in double, exact: the
 * caller guarantees K * max|x| * max|w| + max|bias| < 2**53, so every partial sum is an
 * integer a double holds. x is checked against [xlo, xhi] first (returns 1, out undefined,
 * if an input lies outside; 2 if out of memory). p->w is w [K, Np] with N padded to Np, a multiple of 8, by zero
 * columns; 8 rows of x at a time against 8 columns, in registers. Then the output stage of
 * section 7 as golden.arith.finalize on the int64 v: a right shift rounds half up
 * ((v >> sh) + bit sh-1 of v), a left shift is preceded by the clamp to +-c
 * (golden.arith.left_shift_clamp), ReLU, saturation to [lo, hi]. */
struct dense_plan {
    int64_t K, N, Np;
    const double *w;
    const int64_t *bias;
    int64_t xlo, xhi, shift, c, relu, lo, hi;
};

static inline vi64x8 out_stage(const struct dense_plan *p, vi64x8 v) {
    /* golden.arith.finalize, 8 lanes (masks: a comparison gives -1 / 0 per lane) */
    const int64_t s = p->shift;
    if (s > 0) {
        v = (v >> s) + ((v >> (s - 1)) & 1);
    } else if (s < 0) {
        vi64x8 m = v < -p->c;
        v = (v & ~m) | (-p->c & m);
        m = v > p->c;
        v = (v & ~m) | (p->c & m);
        v = (vi64x8)((vu64x8)v << -s);
    }
    const int64_t lo = p->relu && p->lo < 0 ? 0 : p->lo;
    vi64x8 m = v < lo;
    v = (v & ~m) | (lo & m);
    m = v > p->hi;
    return (v & ~m) | (p->hi & m);
}

int dense(int64_t B, const int64_t *x, int64_t *out, const struct dense_plan *p) {
    const int64_t K = p->K, N = p->N, Np = p->Np;
    int64_t mn = INT64_MAX, mx = INT64_MIN;
    for (int64_t i = 0; i < B * K; i++) {
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
    }
    if (B > 0 && K > 0 && (mn < p->xlo || mx > p->xhi)) return 1;
    double *xd = malloc((size_t)(8 * K > 0 ? 8 * K : 1) * sizeof(double));
    if (!xd) return 2;
    for (int64_t b0 = 0; b0 < B; b0 += 8) {
        /* rows b0 .. b0 + 7 (the last row repeated past B) in double, k-major: xd[k][i] */
        for (int i = 0; i < 8; i++) {
            const int64_t *xr = x + (b0 + i < B ? b0 + i : B - 1) * K;
            for (int64_t k = 0; k < K; k++) xd[8 * k + i] = (double)xr[k];
        }
        for (int64_t n0 = 0; n0 < Np; n0 += 8) {
            vf64x8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0},
                   a7 = {0};
            for (int64_t k = 0; k < K; k++) {
                vf64x8 w;
                memcpy(&w, p->w + k * Np + n0, sizeof w);
                const double *xk = xd + 8 * k;
                a0 += xk[0] * w; a1 += xk[1] * w; a2 += xk[2] * w; a3 += xk[3] * w;
                a4 += xk[4] * w; a5 += xk[5] * w; a6 += xk[6] * w; a7 += xk[7] * w;
            }
            vf64x8 acc[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
            vi64x8 bv = {0};
            const int64_t nn = N - n0 < 8 ? N - n0 : 8;
            if (p->bias) memcpy(&bv, p->bias + n0, nn * sizeof(int64_t));
            for (int i = 0; i < 8 && b0 + i < B; i++) {
                vi64x8 v = out_stage(p, __builtin_convertvector(acc[i], vi64x8) + bv);
                memcpy(out + (b0 + i) * N + n0, &v, nn * sizeof(int64_t));
            }
        }
    }
    free(xd);
    return 0;
}
