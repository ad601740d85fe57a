// Compiled with -ffp-contract=off (CMakeLists.txt): a fused multiply-add would round a product
// and a sum once instead of twice and change the last bit against NumPy.
#include "bilinear_upsample.hpp"

#include <algorithm>
#include <type_traits>
#include <vector>

#include "vector_math.hpp"

#if I2F_HAS_AVX512_LOOP
#include <immintrin.h>
#endif

namespace i2f {

namespace {

constexpr std::int64_t kMaxSide = std::int64_t{1} << 20;

std::string check_taps(const char* axis, const BilinearTaps& taps, std::int64_t input_size) {
    if (taps.size < 1 || taps.size > kMaxSide)
        return std::string("BilinearUpsample: ") + axis + " outputs must be from 1 to " + std::to_string(kMaxSide) + ", got " +
               std::to_string(taps.size);
    if (!taps.index0 || !taps.index1 || !taps.weight0 || !taps.weight1)
        return std::string("BilinearUpsample: the ") + axis + " taps are missing";
    for (std::int64_t k = 0; k < taps.size; ++k) {
        for (const std::int64_t index : {taps.index0[k], taps.index1[k]}) {
            if (index < 0 || index >= input_size)
                return std::string("BilinearUpsample: ") + axis + " tap " + std::to_string(k) + " reads input " + std::to_string(index) +
                       ", outside 0 .. " + std::to_string(input_size - 1);
        }
    }
    return "";
}

// The column taps as int32 indices (they lie in the input: its sides are at most kMaxSide).
struct ColumnTaps {
    std::vector<std::int32_t> index0, index1;
    const float* weight0;
    const float* weight1;
};

// t[j] = x[index0[j]] * weight0[j] + x[index1[j]] * weight1[j]: the gathers are the pass's cost.
__attribute__((always_inline)) inline void horizontal_pass(const float* x, const std::int32_t* index0, const std::int32_t* index1,
                                                           const float* weight0, const float* weight1, std::int64_t cols, float* t) {
    for (std::int64_t j = 0; j < cols; ++j) {
        const float a = x[index0[j]] * weight0[j];
        const float b = x[index1[j]] * weight1[j];
        t[j] = a + b;
    }
}

void horizontal_portable(const float* x, const ColumnTaps& taps, std::int64_t cols, float* t) {
    horizontal_pass(x, taps.index0.data(), taps.index1.data(), taps.weight0, taps.weight1, cols, t);
}

#if I2F_HAS_AVX512_LOOP
// The same, sixteen columns at a time with AVX-512 (GCC does not vectorise the gathers itself); a
// multiply and an add each, as above. Where the sixteen columns read within sixteen consecutive
// inputs from the first one's (an upsampling), those are loaded once and permuted, else gathered.
I2F_AVX512_LOOP void horizontal_avx512(const float* x, std::int64_t width, const ColumnTaps& taps, std::int64_t cols, float* t) {
    const std::int32_t *index0 = taps.index0.data(), *index1 = taps.index1.data();
    // (the masked forms over all lanes: GCC 12 warns of the plain ones' undefined source)
    const __m512 zero = _mm512_setzero_ps();
    std::int64_t j = 0;
    for (; j + 16 <= cols; j += 16) {
        const __m512i i0 = _mm512_loadu_si512(index0 + j), i1 = _mm512_loadu_si512(index1 + j);
        const std::int32_t first = index0[j];
        const __m512i base = _mm512_set1_epi32(first), lanes = _mm512_set1_epi32(16);
        const __m512i offset0 = _mm512_sub_epi32(i0, base), offset1 = _mm512_sub_epi32(i1, base);
        const __mmask16 near = _mm512_cmplt_epu32_mask(offset0, lanes) & _mm512_cmplt_epu32_mask(offset1, lanes);
        __m512 x0, x1;
        if (near == 0xFFFF && first + 16 <= width) {
            const __m512 window = _mm512_loadu_ps(x + first);
            x0 = _mm512_mask_permutexvar_ps(zero, 0xFFFF, offset0, window);
            x1 = _mm512_mask_permutexvar_ps(zero, 0xFFFF, offset1, window);
        } else {
            x0 = _mm512_mask_i32gather_ps(zero, 0xFFFF, i0, x, 4);
            x1 = _mm512_mask_i32gather_ps(zero, 0xFFFF, i1, x, 4);
        }
        const __m512 a = _mm512_mul_ps(x0, _mm512_loadu_ps(taps.weight0 + j));
        const __m512 b = _mm512_mul_ps(x1, _mm512_loadu_ps(taps.weight1 + j));
        _mm512_storeu_ps(t + j, _mm512_add_ps(a, b));
    }
    horizontal_pass(x, index0 + j, index1 + j, taps.weight0 + j, taps.weight1 + j, cols - j, t + j);
}
#endif

// Output row i of a band, from the horizontal pass of the input rows it reads (each computed once
// while the band reads it: the indices of consecutive rows do not decrease, so two rows suffice).
class RowSource {
  public:
    RowSource(const BilinearShapes& shapes, const float* input)
        : shapes_(shapes), input_(input), rows_(2 * static_cast<std::size_t>(shapes.cols.size)),
          cols_{std::vector<std::int32_t>(shapes.cols.index0, shapes.cols.index0 + shapes.cols.size),
                std::vector<std::int32_t>(shapes.cols.index1, shapes.cols.index1 + shapes.cols.size), shapes.cols.weight0,
                shapes.cols.weight1} {}

    // out[j] = t[r0][j] * wr0 + t[r1][j] * wr1 for output row i (float), or that > 0 (uint8).
    template <typename Out>
    void vertical(std::int64_t i, Out* __restrict out) {
        const float* __restrict t0 = horizontal(shapes_.rows.index0[i]);
        const float* __restrict t1 = horizontal(shapes_.rows.index1[i]);
        const float w0 = shapes_.rows.weight0[i], w1 = shapes_.rows.weight1[i];
        const std::int64_t cols = shapes_.cols.size;
        for (std::int64_t j = 0; j < cols; ++j) {
            const float a = t0[j] * w0;
            const float b = t1[j] * w1;
            if constexpr (std::is_same_v<Out, float>) {
                out[j] = a + b;
            } else {
                out[j] = static_cast<Out>(a + b > 0.0f);
            }
        }
    }

  private:
    // t[r]: held in one of two slots; when r is in neither, the slot used less recently is refilled
    // (never the one the row's other tap was just served from).
    const float* horizontal(std::int64_t r) {
        for (int slot = 0; slot < 2; ++slot) {
            if (held_[slot] == r) {
                older_ = 1 - slot;
                return rows_.data() + slot * shapes_.cols.size;
            }
        }
        const int slot = older_;
        older_ = 1 - older_;
        held_[slot] = r;
        float* t = rows_.data() + slot * shapes_.cols.size;
        const float* x = input_ + r * shapes_.input[1];
#if I2F_HAS_AVX512_LOOP
        if (cpu_has_avx512()) {
            horizontal_avx512(x, shapes_.input[1], cols_, shapes_.cols.size, t);
            return t;
        }
#endif
        horizontal_portable(x, cols_, shapes_.cols.size, t);
        return t;
    }

    const BilinearShapes& shapes_;
    const float* input_;
    std::vector<float> rows_;  // [2][cols]: the two held rows
    ColumnTaps cols_;
    std::int64_t held_[2] = {-1, -1};
    int older_ = 0;
};

// Calls row(source, i) for each output row i, in `parts` bands of consecutive rows, a RowSource each.
template <typename Row>
void by_bands(const BilinearShapes& shapes, const float* input, std::int64_t parts, const ParallelFor& parallel_for, const Row& row) {
    const std::int64_t rows = shapes.rows.size;
    parts = std::max<std::int64_t>(1, std::min(parts, rows));
    parallel_for(parts, [&](std::int64_t part) {
        RowSource source(shapes, input);
        for (std::int64_t i = rows * part / parts; i < rows * (part + 1) / parts; ++i) row(source, i);
    });
}

}  // namespace

std::string check_bilinear_upsample(const BilinearShapes& shapes) {
    const std::int64_t h = shapes.input[0], w = shapes.input[1];
    if (h < 1 || w < 1 || h > kMaxSide || w > kMaxSide)
        return "BilinearUpsample: the input must be [h, w] with sides from 1 to " + std::to_string(kMaxSide) + ", got [" +
               std::to_string(h) + ", " + std::to_string(w) + "]";
    if (std::string problem = check_taps("row", shapes.rows, h); !problem.empty()) return problem;
    return check_taps("column", shapes.cols, w);
}

void bilinear_upsample(const BilinearShapes& shapes, const float* input, float* output, std::int64_t parts,
                       const ParallelFor& parallel_for) {
    const std::int64_t cols = shapes.cols.size;
    by_bands(shapes, input, parts, parallel_for, [&](RowSource& source, std::int64_t i) { source.vertical(i, output + i * cols); });
}

void bilinear_upsample_mask(const BilinearShapes& shapes, const float* input, std::uint8_t* mask, std::int64_t parts,
                            const ParallelFor& parallel_for) {
    const std::int64_t cols = shapes.cols.size;
    by_bands(shapes, input, parts, parallel_for, [&](RowSource& source, std::int64_t i) { source.vertical(i, mask + i * cols); });
}

}  // namespace i2f
