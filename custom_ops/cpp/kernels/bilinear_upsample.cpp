// Compiled with -ffp-contract=off (CMakeLists.txt): a fused multiply-add would round a product
// and a sum once instead of twice and change the last bit against NumPy.
#include "bilinear_upsample.hpp"

#include <algorithm>
#include <vector>

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

// A column's taps side by side, 16 bytes (the horizontal pass reads them for every input row).
struct ColumnTap {
    std::int32_t index0, index1;
    float weight0, weight1;
};

// Output row i of a band, from the horizontal pass of the input rows it reads (each computed once
// while the band reads it: the indices of consecutive rows do not decrease, so two rows suffice).
class RowSource {
  public:
    RowSource(const BilinearShapes& shapes, const float* input)
        : shapes_(shapes), input_(input), rows_(3 * static_cast<std::size_t>(shapes.cols.size)),
          cols_(static_cast<std::size_t>(shapes.cols.size)) {
        const BilinearTaps& c = shapes.cols;
        for (std::int64_t j = 0; j < c.size; ++j)
            cols_[j] = {static_cast<std::int32_t>(c.index0[j]), static_cast<std::int32_t>(c.index1[j]), c.weight0[j], c.weight1[j]};
    }

    // A row of cols floats the caller may use (not one of the two held rows).
    float* scratch() { return rows_.data() + 2 * shapes_.cols.size; }

    // out[j] = t[r0][j] * wr0 + t[r1][j] * wr1 for output row i.
    void vertical(std::int64_t i, float* out) {
        const float* t0 = horizontal(shapes_.rows.index0[i]);
        const float* t1 = horizontal(shapes_.rows.index1[i]);
        const float w0 = shapes_.rows.weight0[i], w1 = shapes_.rows.weight1[i];
        for (std::int64_t j = 0; j < shapes_.cols.size; ++j) {
            const float a = t0[j] * w0;
            const float b = t1[j] * w1;
            out[j] = a + b;
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
        const ColumnTap* tap = cols_.data();
        const std::int64_t cols = shapes_.cols.size;
        for (std::int64_t j = 0; j < cols; ++j) {
            const float a = x[tap[j].index0] * tap[j].weight0;
            const float b = x[tap[j].index1] * tap[j].weight1;
            t[j] = a + b;
        }
        return t;
    }

    const BilinearShapes& shapes_;
    const float* input_;
    std::vector<float> rows_;  // [3][cols]: the two held rows, the scratch row
    std::vector<ColumnTap> cols_;
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
    by_bands(shapes, input, parts, parallel_for, [&](RowSource& source, std::int64_t i) {
        const std::int64_t cols = shapes.cols.size;  // a local: the byte stores below could alias a captured one
        float* row = source.scratch();
        source.vertical(i, row);
        std::uint8_t* out = mask + i * cols;
        for (std::int64_t j = 0; j < cols; ++j) out[j] = static_cast<std::uint8_t>(row[j] > 0.0f);
    });
}

}  // namespace i2f
