/* avatar_nb._pcm's innermost loops, written so that the compiler vectorises them.
 *
 * On x86-64 Linux with GCC or clang each kernel is compiled three times (AVX-512,
 * AVX2, baseline SSE2) and the best one for the running CPU is picked when the module
 * loads (target_clones, resolved through an ifunc), as numpy does for its own loops.
 * Elsewhere they are compiled once for the baseline.
 *
 * The loops carry no early exits: they convert everything and report, through flags,
 * whether some input was bad; the Cython caller then finds the first bad sample with a
 * scalar pass (the rare path) to name it in the error.
 */
#ifndef AVATAR_NB_KERNELS_H
#define AVATAR_NB_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(AVATAR_NB_NO_CLONES)
#define AVNB_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define AVNB_CLONES
#endif

/* min/max reductions only vectorise when the compiler may reorder them; the inputs
 * are checked for NaN separately (on their bits, which this flag does not affect). */
#if defined(__GNUC__) && !defined(__clang__)
#define AVNB_REORDER __attribute__((optimize("no-signed-zeros", "finite-math-only")))
#else
#define AVNB_REORDER
#endif

#define AVNB_BAD 1          /* a NaN or an infinity */
#define AVNB_OUT_OF_RANGE 2 /* a float outside [-1, 1] */

/* float32 in [-1, 1] -> int16: clip, scale by 32768, round half away from zero,
 * saturate at 32767. Returns AVNB_BAD | AVNB_OUT_OF_RANGE flags. */
AVNB_CLONES
static int avnb_f32_to_s16(const float *restrict x, ptrdiff_t n, int16_t *restrict out)
{
    int bad = 0, over = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        float v = x[i];
        float a = fabsf(v);
        bad |= !(a <= 3.40282347e38f); /* NaN compares false */
        over |= a > 1.0f;
        v = v < 1.0f ? v : 1.0f;
        v = v > -1.0f ? v : -1.0f;
        float y = v * 32768.0f;
        int32_t q = (int32_t)(y + copysignf(0.5f, y));
        out[i] = (int16_t)(q < 32767 ? q : 32767);
    }
    return (bad ? AVNB_BAD : 0) | (over ? AVNB_OUT_OF_RANGE : 0);
}

AVNB_CLONES
static int avnb_f64_to_s16(const double *restrict x, ptrdiff_t n, int16_t *restrict out)
{
    int bad = 0, over = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        double v = x[i];
        double a = fabs(v);
        bad |= !(a <= 1.7976931348623157e308);
        over |= a > 1.0;
        v = v < 1.0 ? v : 1.0;
        v = v > -1.0 ? v : -1.0;
        double y = v * 32768.0;
        int32_t q = (int32_t)(y + copysign(0.5, y));
        out[i] = (int16_t)(q < 32767 ? q : 32767);
    }
    return (bad ? AVNB_BAD : 0) | (over ? AVNB_OUT_OF_RANGE : 0);
}

/* Min and max of each of `bins` spans of x: bin b covers [b*n/bins, (b+1)*n/bins).
 * Requires 0 < bins <= n. The float versions return whether some value was NaN
 * (judged on its bits, which the reordering flags above do not affect): the bins
 * are then meaningless and the caller reports the NaN instead. */
AVNB_CLONES AVNB_REORDER
static int avnb_minmax_f32(const float *restrict x, ptrdiff_t n, ptrdiff_t bins,
                           float *restrict mins, float *restrict maxs)
{
    uint32_t nan = 0;
    for (ptrdiff_t b = 0; b < bins; b++) {
        ptrdiff_t a = b * n / bins, e = (b + 1) * n / bins;
        float lo = x[a], hi = x[a];
        for (ptrdiff_t i = a; i < e; i++) {
            float v = x[i];
            uint32_t bits;
            memcpy(&bits, &v, 4);
            nan |= (bits & 0x7fffffffu) > 0x7f800000u;
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        mins[b] = lo;
        maxs[b] = hi;
    }
    return nan != 0;
}

AVNB_CLONES AVNB_REORDER
static int avnb_minmax_f64(const double *restrict x, ptrdiff_t n, ptrdiff_t bins,
                           float *restrict mins, float *restrict maxs)
{
    uint64_t nan = 0;
    for (ptrdiff_t b = 0; b < bins; b++) {
        ptrdiff_t a = b * n / bins, e = (b + 1) * n / bins;
        double lo = x[a], hi = x[a];
        for (ptrdiff_t i = a; i < e; i++) {
            double v = x[i];
            uint64_t bits;
            memcpy(&bits, &v, 8);
            nan |= (bits & 0x7fffffffffffffffull) > 0x7ff0000000000000ull;
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        mins[b] = (float)lo;
        maxs[b] = (float)hi;
    }
    return nan != 0;
}

AVNB_CLONES
static void avnb_minmax_i16(const int16_t *restrict x, ptrdiff_t n, ptrdiff_t bins,
                            float *restrict mins, float *restrict maxs)
{
    for (ptrdiff_t b = 0; b < bins; b++) {
        ptrdiff_t a = b * n / bins, e = (b + 1) * n / bins;
        int16_t lo = x[a], hi = x[a];
        for (ptrdiff_t i = a + 1; i < e; i++) {
            int16_t v = x[i];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        mins[b] = (float)lo * (1.0f / 32768.0f);
        maxs[b] = (float)hi * (1.0f / 32768.0f);
    }
}

#endif /* AVATAR_NB_KERNELS_H */
