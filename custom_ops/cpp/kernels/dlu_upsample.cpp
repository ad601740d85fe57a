#include "dlu_upsample.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <vector>

namespace i2f {

namespace {

constexpr std::int64_t kPad = 2;        // the replicate padding of the tap maps
constexpr std::int64_t kTileRows = 16;  // low-resolution rows per work item
constexpr std::int64_t kMaxSide = std::int64_t{1} << 20;

// Keys' cubic convolution kernel, A = -0.75 (PyTorch's bicubic).
double cubic(double distance) {
    const double a = -0.75;
    const double x = std::fabs(distance);
    if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
    return 0.0;
}

// Weights of the four inputs of high-resolution sample 2i (inputs i-2..i+1) and 2i+1 (i-1..i+2).
struct Bicubic {
    float even[4];
    float odd[4];
    Bicubic() {
        const double even_distances[4] = {1.75, 0.75, 0.25, 1.25};
        const double odd_distances[4] = {1.25, 0.25, 0.75, 1.75};
        for (int t = 0; t < 4; ++t) {
            even[t] = static_cast<float>(cubic(even_distances[t]));
            odd[t] = static_cast<float>(cubic(odd_distances[t]));
        }
    }
};

const Bicubic& bicubic() {
    static const Bicubic weights;
    return weights;
}

// One padded row (w + 4 values) upsampled along x: its even and odd samples (w each).
void upsample_row(const float* row, std::int64_t width, const Bicubic& k, float* even, float* odd) {
    for (std::int64_t i = 0; i < width; ++i) {
        even[i] = k.even[0] * row[i] + k.even[1] * row[i + 1] + k.even[2] * row[i + 2] + k.even[3] * row[i + 3];
        odd[i] = k.odd[0] * row[i + 1] + k.odd[1] * row[i + 2] + k.odd[2] * row[i + 3] + k.odd[3] * row[i + 4];
    }
}

struct Dims {
    std::int64_t channels, edge_channels, grid_h, grid_w, height, width;
    std::int64_t left, top, right, bottom;
};

Dims dims_of(const DluUpsampleShapes& s, const std::int64_t* box) {
    return Dims{s.channels,   s.edge_map[1], s.edge_term[2], s.edge_term[3], s.mixed[2] - 2 * kPad,
                s.mixed[3] - 2 * kPad, box[0], box[1], box[2], box[3]};
}

// The edge map's columns just left and right of the crop, over the crop's rows: [E][2h] each
// (gathered once per call: every channel's ring correction reads them).
struct EdgeColumns {
    std::vector<float> left, right;
};

EdgeColumns gather_edge_columns(const Dims& d, const float* edge_map) {
    const std::int64_t edge_w = 2 * d.grid_w, out_h = 2 * d.height;
    const std::int64_t edge_plane = 2 * d.grid_h * edge_w;
    EdgeColumns columns;
    auto gather = [&](std::vector<float>& column, std::int64_t edge_x) {
        column.resize(static_cast<std::size_t>(d.edge_channels * out_h));
        for (std::int64_t e = 0; e < d.edge_channels; ++e)
            for (std::int64_t row = 0; row < out_h; ++row)
                column[e * out_h + row] = edge_map[e * edge_plane + (2 * d.top + row) * edge_w + edge_x];
    };
    if (d.left > 0) gather(columns.left, 2 * d.left - 1);
    if (d.right < d.grid_w) gather(columns.right, 2 * d.right);
    return columns;
}

// Low-resolution rows [j0, j1) of output channel c: taps, edge term, ring corrections. (Clones for
// AVX2/AVX-512 measured no faster: the stage is bound by memory traffic, not arithmetic.)
void upsample_tile(
    const Dims& d, const float* mixed, const float* edge_map, const float* edge_term, const float* edge_weight,
    const EdgeColumns& columns, std::int64_t c, std::int64_t j0, std::int64_t j1, float* y) {
    const Bicubic& k = bicubic();
    const std::int64_t w = d.width, h = d.height;
    const std::int64_t padded_w = w + 2 * kPad, padded_h = h + 2 * kPad;
    const std::int64_t out_w = 2 * w, out_h = 2 * h;
    const std::int64_t rows = j1 - j0 + 4;  // padded rows j0 .. j1+3 feed output rows 2*j0 .. 2*j1-1
    // horizontal pass: per ky and padded row, the three kx taps' shifted bicubic samples summed,
    // kept as even (px 0) and odd (px 1) planes
    std::vector<float> across(static_cast<std::size_t>(3 * 2 * rows * w));
    std::vector<float> samples(static_cast<std::size_t>(6 * w));
    auto plane = [&](std::int64_t ky, std::int64_t px, std::int64_t r) { return across.data() + ((ky * 2 + px) * rows + r) * w; };
    for (std::int64_t ky = 0; ky < 3; ++ky) {
        for (std::int64_t r = 0; r < rows; ++r) {
            for (std::int64_t kx = 0; kx < 3; ++kx) {
                const float* map = mixed + ((c * 9 + ky * 3 + kx) * padded_h + j0 + r) * padded_w;
                upsample_row(map, w, k, samples.data() + 2 * kx * w, samples.data() + (2 * kx + 1) * w);
            }
            const float *even0 = samples.data(), *odd0 = even0 + w, *even1 = odd0 + w, *odd1 = even1 + w;
            const float *even2 = odd1 + w, *odd2 = even2 + w;
            float* even = plane(ky, 0, r);
            float* odd = plane(ky, 1, r);
            // kx = 0 reads sample X - 1, kx = 2 sample X + 1 (zero beyond the crop)
            for (std::int64_t i = 0; i < w; ++i) {
                even[i] = even1[i] + odd2[i];
                odd[i] = odd1[i] + even0[i];
            }
            for (std::int64_t i = 1; i < w; ++i) even[i] += odd0[i - 1];
            for (std::int64_t i = 0; i + 1 < w; ++i) odd[i] += even2[i + 1];
        }
    }
    // vertical pass, edge term, interleave
    std::vector<float> out_even(static_cast<std::size_t>(w)), out_odd(static_cast<std::size_t>(w));
    const std::int64_t term_plane = d.grid_h * d.grid_w;
    for (std::int64_t j = j0; j < j1; ++j) {
        for (std::int64_t py = 0; py < 2; ++py) {
            const std::int64_t out_y = 2 * j + py;
            const float* term_even = edge_term + (c * 4 + py * 2) * term_plane + (d.top + j) * d.grid_w + d.left;
            const float* term_odd = term_even + term_plane;
            std::copy(term_even, term_even + w, out_even.begin());
            std::copy(term_odd, term_odd + w, out_odd.begin());
            for (std::int64_t ky = 0; ky < 3; ++ky) {
                const std::int64_t sample = out_y + ky - 1;
                if (sample < 0 || sample >= out_h) continue;  // the 3x3 conv reads zeros beyond the crop
                const std::int64_t first = (sample >> 1) + (sample & 1) - j0;
                const float* weights = (sample & 1) ? k.odd : k.even;
                for (std::int64_t t = 0; t < 4; ++t) {
                    const float weight = weights[t];
                    const float* even = plane(ky, 0, first + t);
                    const float* odd = plane(ky, 1, first + t);
                    for (std::int64_t i = 0; i < w; ++i) {
                        out_even[i] += weight * even[i];
                        out_odd[i] += weight * odd[i];
                    }
                }
            }
            float* out = y + (c * out_h + out_y) * out_w;
            for (std::int64_t i = 0; i < w; ++i) {
                out[2 * i] = out_even[i];
                out[2 * i + 1] = out_odd[i];
            }
        }
    }
    // the edge term saw image pixels just outside the crop where the crop's conv reads zeros
    const std::int64_t edge_h = 2 * d.grid_h, edge_w = 2 * d.grid_w;
    const std::int64_t edge_plane = edge_h * edge_w;
    const float* weight_c = edge_weight + c * d.edge_channels * 9;
    auto subtract_row = [&](std::int64_t out_y, std::int64_t edge_y, std::int64_t ky) {
        std::vector<float> total(static_cast<std::size_t>(out_w), 0.0f);
        for (std::int64_t e = 0; e < d.edge_channels; ++e) {
            const float* line = edge_map + e * edge_plane + edge_y * edge_w;
            for (std::int64_t kx = 0; kx < 3; ++kx) {
                const float weight = weight_c[e * 9 + ky * 3 + kx];
                const std::int64_t offset = 2 * d.left + kx - 1;  // edge column of output column 0
                const std::int64_t begin = std::max<std::int64_t>(0, -offset);
                const std::int64_t end = std::min(out_w, edge_w - offset);
                for (std::int64_t x = begin; x < end; ++x) total[x] += weight * line[offset + x];
            }
        }
        float* out = y + (c * out_h + out_y) * out_w;
        for (std::int64_t x = 0; x < out_w; ++x) out[x] -= total[x];
    };
    auto subtract_column = [&](std::int64_t out_x, const std::vector<float>& column, std::int64_t kx) {
        const std::int64_t first = 2 * j0, count = 2 * (j1 - j0);
        std::vector<float> total(static_cast<std::size_t>(count), 0.0f);
        for (std::int64_t e = 0; e < d.edge_channels; ++e) {
            const float* values = column.data() + e * out_h;
            for (std::int64_t ky = 0; ky < 3; ++ky) {
                // rows outside the crop are the row correction's
                const float weight = weight_c[e * 9 + ky * 3 + kx];
                const std::int64_t begin = std::max<std::int64_t>(0, 1 - ky - first);
                const std::int64_t end = std::min(count, out_h + 1 - ky - first);
                const std::int64_t offset = first + ky - 1;  // the column's row of total[0]
                for (std::int64_t row = begin; row < end; ++row) total[row] += weight * values[offset + row];
            }
        }
        for (std::int64_t row = 0; row < count; ++row) y[(c * out_h + first + row) * out_w + out_x] -= total[row];
    };
    if (j0 == 0 && d.top > 0) subtract_row(0, 2 * d.top - 1, 0);
    if (j1 == h && d.bottom < d.grid_h) subtract_row(out_h - 1, 2 * d.bottom, 2);
    if (d.left > 0) subtract_column(0, columns.left, 0);
    if (d.right < d.grid_w) subtract_column(out_w - 1, columns.right, 2);
}

}  // namespace

std::string check_dlu_upsample(const DluUpsampleShapes& s, const std::int64_t* box) {
    std::ostringstream error;
    error << "DLUUpsample: ";
    auto shape = [](const std::int64_t* dims) {
        std::ostringstream text;
        text << "[" << dims[0] << ", " << dims[1] << ", " << dims[2] << ", " << dims[3] << "]";
        return text.str();
    };
    for (const std::int64_t* dims : {s.mixed, s.edge_map, s.edge_term, s.edge_weight}) {
        for (int axis = 0; axis < 4; ++axis) {
            if (dims[axis] < 1 || dims[axis] > kMaxSide) {
                error << "a dimension of " << shape(dims) << " is outside 1.." << kMaxSide;
                return error.str();
            }
        }
    }
    const std::int64_t c = s.channels;
    if (c < 1 || c > kMaxSide) return error.str() + "channels must be at least 1, got " + std::to_string(c);
    if (s.mixed[0] != 1 || s.edge_map[0] != 1 || s.edge_term[0] != 1) return error.str() + "batch must be 1";
    if (s.mixed[1] != 9 * c)
        return error.str() + "mixed " + shape(s.mixed) + " must have 9 x channels = " + std::to_string(9 * c) + " channels";
    if (s.edge_term[1] != 4 * c)
        return error.str() + "edge_term " + shape(s.edge_term) + " must have 4 x channels = " + std::to_string(4 * c) + " channels";
    if (s.edge_weight[0] != c || s.edge_weight[1] != s.edge_map[1] || s.edge_weight[2] != 3 || s.edge_weight[3] != 3)
        return error.str() + "edge_weight " + shape(s.edge_weight) + " must be [channels, edge_map channels, 3, 3] = [" +
               std::to_string(c) + ", " + std::to_string(s.edge_map[1]) + ", 3, 3]";
    if (s.edge_map[2] != 2 * s.edge_term[2] || s.edge_map[3] != 2 * s.edge_term[3])
        return error.str() + "edge_map " + shape(s.edge_map) + " must be twice edge_term " + shape(s.edge_term) + " in height and width";
    if (s.mixed[2] <= 2 * kPad || s.mixed[3] <= 2 * kPad)
        return error.str() + "mixed " + shape(s.mixed) + " must be at least 5x5 (a crop of 1x1 padded by 2)";
    if (s.box_size != 4) return error.str() + "box must have 4 values, got " + std::to_string(s.box_size);
    if (box == nullptr) return error.str() + "box is missing";
    const std::int64_t h = s.mixed[2] - 2 * kPad, w = s.mixed[3] - 2 * kPad;
    const std::int64_t left = box[0], top = box[1], right = box[2], bottom = box[3];
    if (left < 0 || top < 0 || right > s.edge_term[3] || bottom > s.edge_term[2] || right - left != w || bottom - top != h) {
        error << "box (" << left << ", " << top << ", " << right << ", " << bottom << ") must lie in the " << s.edge_term[2]
              << "x" << s.edge_term[3] << " grid and span the crop's " << h << "x" << w;
        return error.str();
    }
    return "";
}

void dlu_upsample(const DluUpsampleShapes& shapes, const float* mixed, const float* edge_map, const float* edge_term,
                  const float* edge_weight, const std::int64_t* box, float* y, const ParallelFor& parallel_for) {
    const Dims d = dims_of(shapes, box);
    const std::int64_t tiles = (d.height + kTileRows - 1) / kTileRows;
    const EdgeColumns columns = gather_edge_columns(d, edge_map);
    parallel_for(d.channels * tiles, [&](std::int64_t item) {
        const std::int64_t c = item / tiles;
        const std::int64_t j0 = (item % tiles) * kTileRows;
        const std::int64_t j1 = std::min(d.height, j0 + kTileRows);
        upsample_tile(d, mixed, edge_map, edge_term, edge_weight, columns, c, j0, j1, y);
    });
}

}  // namespace i2f
