#include "prompt_convolution.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "vector_math.hpp"

namespace i2f {

namespace {

constexpr std::int64_t kMaxSide = std::int64_t{1} << 15;
constexpr std::int64_t kMaxChannels = std::int64_t{1} << 12;
constexpr std::int64_t kMaxValues = 255;  // so that kMixed is never a prompt value
constexpr std::uint8_t kMixed = 255;      // a position whose field crosses a change of value or the border
constexpr std::int64_t kTaps = 9;
constexpr std::int64_t kPanel = 32;              // output channels per panel of the packed weights
constexpr std::int64_t kBlock = 24;              // positions multiplied together (a whole number of register rows)
constexpr std::int64_t kItemWork = 1 << 21;      // multiply-adds a work item aims at (blocks of small layers share one)
constexpr std::int64_t kMapRowsPerItem = 16;     // rows of a value map per work item
constexpr std::int64_t kPositionsPerItem = 1024;  // layer 1's positions, or output positions, per work item

std::string dims(const std::int64_t* values, int count) {
    std::string text = "[";
    for (int i = 0; i < count; ++i) text += (i ? ", " : "") + std::to_string(values[i]);
    return text + "]";
}

// One layer's grid as the next layer reads it: per position its prompt value, or kMixed with its
// row in `activations`. Layer 0 is the labels themselves: no position mixed, read by first_layer.
struct Level {
    std::int64_t height, width, channels;
    const std::uint8_t* values;
    const std::int32_t* rows;
    const float* activations;  // [mixed positions][channels]
    const float* constants;    // [V][channels]

    const float* at(std::int64_t position) const {
        const std::uint8_t value = values[position];
        return value == kMixed ? activations + static_cast<std::int64_t>(rows[position]) * channels : constants + value * channels;
    }
};

// A layer's weights for the block products: panels of kPanel output channels, each [9 * Cin][kPanel]
// (row tap * Cin + ci, zeros past C_out), and the bias padded to whole panels.
struct Packed {
    std::int64_t inputs, outputs, panels;
    std::unique_ptr<float[]> weights;
    std::vector<float> bias;
    std::vector<float> tap_sums;  // [C_in][C_out]: the weights summed over the taps (a constant map's product)
};

Packed pack_layer(const std::int64_t* shape, const float* weight, const float* bias, const ParallelFor& parallel_for) {
    Packed p;
    p.outputs = shape[0];
    p.inputs = shape[1];
    p.panels = (p.outputs + kPanel - 1) / kPanel;
    const std::int64_t depth = kTaps * p.inputs;
    p.weights.reset(new float[static_cast<std::size_t>(p.panels * depth * kPanel)]);
    p.bias.assign(static_cast<std::size_t>(p.panels * kPanel), 0.0f);
    std::copy_n(bias, p.outputs, p.bias.begin());
    p.tap_sums.resize(static_cast<std::size_t>(p.outputs * p.inputs));
    parallel_for(p.panels, [&](std::int64_t panel) {
        float* target = p.weights.get() + panel * depth * kPanel;
        const float* source = weight + panel * kPanel * depth;
        const std::int64_t columns = std::min(kPanel, p.outputs - panel * kPanel);
        if (columns < kPanel) std::fill_n(target, depth * kPanel, 0.0f);
        // each row of the panel written whole, its values read from the panel's outputs in turn
        for (std::int64_t ci = 0; ci < p.inputs; ++ci) {
            float sums[kPanel] = {};
            for (std::int64_t t = 0; t < kTaps; ++t) {
                float* row = target + (t * p.inputs + ci) * kPanel;
                for (std::int64_t j = 0; j < columns; ++j) {
                    row[j] = source[j * depth + ci * kTaps + t];
                    sums[j] += row[j];
                }
            }
            std::copy_n(sums, columns, p.tap_sums.begin() + ci * p.outputs + panel * kPanel);
        }
    });
    return p;
}

// The constants of a layer, [V][C_out]: relu(bias + tap_sums . the constant of the layer before), per value.
I2F_HOT_LOOP void constant_rows(const Packed& p, const float* previous, std::int64_t values, float* constants) {
    for (std::int64_t v = 0; v < values; ++v) {
        float* row = constants + v * p.outputs;
        std::copy_n(p.bias.data(), p.outputs, row);
        for (std::int64_t ci = 0; ci < p.inputs; ++ci) {
            const float input = previous[v * p.inputs + ci];
            const float* sums = p.tap_sums.data() + ci * p.outputs;
            for (std::int64_t co = 0; co < p.outputs; ++co) row[co] += sums[co] * input;
        }
        for (std::int64_t co = 0; co < p.outputs; ++co) row[co] = std::max(row[co], 0.0f);
    }
}

std::vector<float> layer_constants(const Packed& p, const float* previous, std::int64_t values) {
    std::vector<float> constants(static_cast<std::size_t>(values * p.outputs));
    constant_rows(p, previous, values, constants.data());
    return constants;
}

// Row y of a layer's values from rows 2y-1..2y+1 of the layer before (height x width): a value
// where the 3 x 3 inputs lie inside and agree, else kMixed. Returns the row's mixed positions.
I2F_HOT_LOOP std::int64_t values_row(const std::uint8_t* in, std::int64_t height, std::int64_t width, std::int64_t y,
                                     std::int64_t out_width, std::uint8_t* out) {
    std::fill_n(out, out_width, kMixed);
    if (y == 0 || 2 * y + 1 >= height) return out_width;
    const std::uint8_t* r0 = in + (2 * y - 1) * width;
    const std::uint8_t* r1 = r0 + width;
    const std::uint8_t* r2 = r1 + width;
    const std::int64_t last = (width - 2) / 2;  // the last x with 2x + 1 inside
    for (std::int64_t x = 1; x <= last; ++x) {
        const std::int64_t c = 2 * x;
        const std::uint8_t v = r1[c];
        const bool same = (r0[c - 1] == v) & (r0[c] == v) & (r0[c + 1] == v) & (r1[c - 1] == v) & (r1[c + 1] == v) & (r2[c - 1] == v) &
                          (r2[c] == v) & (r2[c + 1] == v);
        out[x] = same ? v : kMixed;
    }
    std::int32_t mixed = 0;
    for (std::int64_t x = 0; x < out_width; ++x) mixed += out[x] == kMixed;
    return mixed;
}

// What a position reads at input (iy, ix) of the level before, as one number: -1 for padding, the
// value of a constant input, kMixed + its row for a mixed one.
std::int64_t input_identity(const Level& in, std::int64_t iy, std::int64_t ix) {
    if (iy < 0 || iy >= in.height || ix < 0 || ix >= in.width) return -1;
    const std::int64_t position = iy * in.width + ix;
    const std::uint8_t value = in.values[position];
    return value == kMixed ? kMixed + in.rows[position] : value;
}

// Whether positions (y, x) and (y2, x2) read the same nine inputs (so have the same activation).
bool same_inputs(const Level& in, std::int64_t y, std::int64_t x, std::int64_t y2, std::int64_t x2) {
    for (std::int64_t ty = -1; ty <= 1; ++ty)
        for (std::int64_t tx = -1; tx <= 1; ++tx)
            if (input_identity(in, 2 * y + ty, 2 * x + tx) != input_identity(in, 2 * y2 + ty, 2 * x2 + tx)) return false;
    return true;
}

// A mixed position whose activation is computed, and its row in the activations.
struct Work {
    std::int32_t position, row;
};

// A layer's value map, the rows of its mixed positions (the index map) and the positions to compute.
// A mixed position on the grid's border that reads what its neighbour along the border reads
// shares its row: where the border cuts a region of one value, every position does (the first
// click's whole top row and left column).
struct LayerMap {
    std::int64_t height = 0, width = 0;
    std::unique_ptr<std::uint8_t[]> values;
    std::unique_ptr<std::int32_t[]> rows;  // set at the mixed positions only
    std::int64_t row_count = 0;            // rows of the activations (some unused where a border shares)
    std::vector<Work> work;
};

LayerMap next_map(const Level& in, const ParallelFor& parallel_for) {
    LayerMap map;
    map.height = (in.height + 1) / 2;
    map.width = (in.width + 1) / 2;
    const std::int64_t size = map.height * map.width, last_row = map.height - 1, last_column = map.width - 1;
    map.values.reset(new std::uint8_t[static_cast<std::size_t>(size)]);
    map.rows.reset(new std::int32_t[static_cast<std::size_t>(size)]);
    const std::int64_t items = (map.height + kMapRowsPerItem - 1) / kMapRowsPerItem;
    std::vector<std::int64_t> next(static_cast<std::size_t>(items) + 1, 0);  // an item's next row
    parallel_for(items, [&](std::int64_t item) {
        std::int64_t count = 0;
        for (std::int64_t y = item * kMapRowsPerItem; y < std::min(map.height, (item + 1) * kMapRowsPerItem); ++y)
            count += values_row(in.values, in.height, in.width, y, map.width, map.values.get() + y * map.width);
        next[static_cast<std::size_t>(item) + 1] = count;
    });
    for (std::int64_t item = 0; item < items; ++item) next[static_cast<std::size_t>(item) + 1] += next[static_cast<std::size_t>(item)];
    map.row_count = next.back();
    auto reuse = [&](std::int64_t position, std::int64_t neighbour) -> std::int32_t {  // the neighbour's row if it reads the same, else -1
        if (map.values[static_cast<std::size_t>(neighbour)] != kMixed ||
            !same_inputs(in, position / map.width, position % map.width, neighbour / map.width, neighbour % map.width))
            return -1;
        return map.rows[static_cast<std::size_t>(neighbour)];
    };
    // rows of the positions between the first and last columns, per item from its first row on; a
    // top or bottom position may share its left neighbour's row
    std::vector<std::vector<Work>> work(static_cast<std::size_t>(items) + 1);
    parallel_for(items, [&](std::int64_t item) {
        std::int64_t& row_of_item = next[static_cast<std::size_t>(item)];
        const std::uint8_t* values = map.values.get();
        const std::uint8_t* end = values + std::min(size, (item + 1) * kMapRowsPerItem * map.width);
        for (const std::uint8_t* at = values + item * kMapRowsPerItem * map.width; at < end; ++at) {
            at = static_cast<const std::uint8_t*>(std::memchr(at, kMixed, static_cast<std::size_t>(end - at)));
            if (at == nullptr) break;
            const std::int64_t position = at - values, y = position / map.width, x = position % map.width;
            if (x == 0 || x == last_column) continue;
            std::int32_t row = (y == 0 || y == last_row) && x > 1 ? reuse(position, position - 1) : -1;
            if (row < 0) {
                row = static_cast<std::int32_t>(row_of_item++);
                work[static_cast<std::size_t>(item)].push_back(Work{static_cast<std::int32_t>(position), row});
            }
            map.rows[static_cast<std::size_t>(position)] = row;
        }
    });
    // then the first and last columns top to bottom, sharing a top neighbour's row (or at a corner a
    // left neighbour's), with rows from the range of their item
    std::vector<Work>& columns = work.back();
    for (std::int64_t y = 0; y < map.height; ++y)
        for (std::int64_t x = 0; x < map.width; x += std::max<std::int64_t>(1, last_column)) {
            const std::int64_t position = y * map.width + x;
            if (map.values[static_cast<std::size_t>(position)] != kMixed) continue;
            std::int32_t row = y > 0 ? reuse(position, position - map.width) : -1;
            if (row < 0 && (y == 0 || y == last_row) && x > 0) row = reuse(position, position - 1);
            if (row < 0) {
                row = static_cast<std::int32_t>(next[static_cast<std::size_t>(y / kMapRowsPerItem)]++);
                columns.push_back(Work{static_cast<std::int32_t>(position), row});
            }
            map.rows[static_cast<std::size_t>(position)] = row;
        }
    for (const std::vector<Work>& part : work) map.work.insert(map.work.end(), part.begin(), part.end());
    return map;
}

// Layer 1 reads table rows only: a position's sum is its taps' products with their values' rows,
// products [9][V][C1]: products[t][v] = weight1[:, :, t] . table[v].
std::vector<float> tap_products(const PromptConvolutionShapes& s, const float* table, const float* weight) {
    const std::int64_t values = s.table[0], embed = s.table[1], outputs = s.weight[0][0];
    std::vector<float> products(static_cast<std::size_t>(kTaps * values * outputs));
    for (std::int64_t co = 0; co < outputs; ++co)
        for (std::int64_t t = 0; t < kTaps; ++t)
            for (std::int64_t v = 0; v < values; ++v) {
                float sum = 0.0f;
                for (std::int64_t e = 0; e < embed; ++e) sum += weight[(co * embed + e) * kTaps + t] * table[v * embed + e];
                products[static_cast<std::size_t>((t * values + v) * outputs + co)] = sum;
            }
    return products;
}

// Layer 1's constants [V][C1]: relu(bias + the nine products of the value), summed in tap order.
std::vector<float> first_constants(const std::vector<float>& products, const float* bias, std::int64_t values, std::int64_t outputs) {
    std::vector<float> constants(static_cast<std::size_t>(values * outputs));
    for (std::int64_t v = 0; v < values; ++v)
        for (std::int64_t co = 0; co < outputs; ++co) {
            float sum = bias[co];
            for (std::int64_t t = 0; t < kTaps; ++t) sum += products[static_cast<std::size_t>((t * values + v) * outputs + co)];
            constants[static_cast<std::size_t>(v * outputs + co)] = std::max(sum, 0.0f);
        }
    return constants;
}

// Layer 1's activations of `count` positions: relu(bias + the products of their taps inside the
// map), in tap order as first_constants sums them.
I2F_HOT_LOOP void first_layer_rows(const Level& labels, const Work* work, std::int64_t count, std::int64_t out_width,
                                   const float* products, std::int64_t values, const float* bias, std::int64_t outputs,
                                   float* activations) {
    for (std::int64_t i = 0; i < count; ++i) {
        const std::int64_t y = work[i].position / out_width, x = work[i].position % out_width;
        const float* adds[kTaps];
        int taps = 0;
        for (std::int64_t ty = 0; ty < 3; ++ty)
            for (std::int64_t tx = 0; tx < 3; ++tx) {
                const std::int64_t iy = 2 * y - 1 + ty, ix = 2 * x - 1 + tx;
                if (iy >= 0 && iy < labels.height && ix >= 0 && ix < labels.width)
                    adds[taps++] = products + ((ty * 3 + tx) * values + labels.values[iy * labels.width + ix]) * outputs;
            }
        float* out = activations + static_cast<std::int64_t>(work[i].row) * outputs;
        std::int64_t co = 0;
        for (; co + kLanes <= outputs; co += kLanes) {
            Floats8 sum = load8(bias + co);
            for (int t = 0; t < taps; ++t) sum += load8(adds[t] + co);
            store8(out + co, sum < Floats8{} ? Floats8{} : sum);
        }
        for (; co < outputs; ++co) {
            float sum = bias[co];
            for (int t = 0; t < taps; ++t) sum += adds[t][co];
            out[co] = std::max(sum, 0.0f);
        }
    }
}

std::unique_ptr<float[]> first_layer(const Level& labels, const LayerMap& map, const std::vector<float>& products, const float* bias,
                                     std::int64_t values, std::int64_t outputs, const ParallelFor& parallel_for) {
    const std::int64_t n = static_cast<std::int64_t>(map.work.size());
    std::unique_ptr<float[]> activations(new float[static_cast<std::size_t>(std::max<std::int64_t>(1, map.row_count * outputs))]);
    parallel_for((n + kPositionsPerItem - 1) / kPositionsPerItem, [&](std::int64_t item) {
        const std::int64_t first = item * kPositionsPerItem;
        first_layer_rows(labels, map.work.data() + first, std::min(kPositionsPerItem, n - first), map.width, products.data(), values, bias,
                         outputs, activations.get());
    });
    return activations;
}

// The block's patches [kBlock][9 * Cin] (padding and rows past `count` zero): position (y, x) reads
// inputs (2y - 1 + ty, 2x - 1 + tx) of the level before.
void gather_patches(const Level& in, const Work* work, std::int64_t count, std::int64_t out_width, float* patches) {
    const std::int64_t cin = in.channels, depth = kTaps * cin;
    for (std::int64_t i = 0; i < count; ++i) {
        const std::int64_t y = work[i].position / out_width, x = work[i].position % out_width;
        for (std::int64_t ty = 0; ty < 3; ++ty)
            for (std::int64_t tx = 0; tx < 3; ++tx) {
                const std::int64_t iy = 2 * y - 1 + ty, ix = 2 * x - 1 + tx;
                float* to = patches + i * depth + (ty * 3 + tx) * cin;
                if (iy < 0 || iy >= in.height || ix < 0 || ix >= in.width)
                    std::fill_n(to, cin, 0.0f);
                else
                    std::memcpy(to, in.at(iy * in.width + ix), static_cast<std::size_t>(cin) * sizeof(float));
            }
    }
    std::fill(patches + count * depth, patches + kBlock * depth, 0.0f);  // the last row step may read them
}

// sums[r][j] = relu(bias[j] + sum_k a[r][k] b[k][j]) for Rows rows of `a` (depth apart) and Cols
// vectors V of a panel's columns (b rows kPanel apart), the accumulators in registers.
template <typename V, int Rows, int Cols>
__attribute__((always_inline)) inline void multiply_rows(const float* a, std::int64_t depth, const float* b, const float* bias, float* sums,
                                                         std::int64_t sums_stride) {
    constexpr std::int64_t lanes = sizeof(V) / sizeof(float);
    V acc[Rows][Cols];
    for (int r = 0; r < Rows; ++r)
        for (int c = 0; c < Cols; ++c) acc[r][c] = load_vector<V>(bias + c * lanes);
    for (std::int64_t k = 0; k < depth; ++k) {
        V w[Cols];
        for (int c = 0; c < Cols; ++c) w[c] = load_vector<V>(b + k * kPanel + c * lanes);
#pragma GCC unroll 16
        for (int r = 0; r < Rows; ++r)
            for (int c = 0; c < Cols; ++c) acc[r][c] += w[c] * a[r * depth + k];  // a vector times a scalar: one broadcast from memory
    }
    for (int r = 0; r < Rows; ++r)
        for (int c = 0; c < Cols; ++c) store_vector(sums + r * sums_stride + c * lanes, acc[r][c] < V{} ? V{} : acc[r][c]);
}

// The block's first `count` rows of patches times every panel: sums [kBlock][panels * kPanel].
template <typename V, int Rows, int Cols>
__attribute__((always_inline)) inline void multiply_block(const float* patches, std::int64_t count, const Packed& p, float* sums) {
    constexpr std::int64_t width = Cols * sizeof(V) / sizeof(float);
    static_assert(kPanel % width == 0 && kBlock % Rows == 0, "a panel holds whole column steps, a block whole row steps");
    const std::int64_t depth = kTaps * p.inputs, stride = p.panels * kPanel;
    for (std::int64_t panel = 0; panel < p.panels; ++panel)
        for (std::int64_t j = panel * kPanel; j < (panel + 1) * kPanel; j += width)
            for (std::int64_t r = 0; r < count; r += Rows)
                multiply_rows<V, Rows, Cols>(patches + r * depth, depth, p.weights.get() + panel * depth * kPanel + j % kPanel,
                                             p.bias.data() + j, sums + r * stride + j, stride);
}

// Eight-float vectors, six rows by two: 12 accumulators and the two weight vectors in the 16 AVX registers.
I2F_HOT_LOOP void multiply_portable(const float* patches, std::int64_t count, const Packed& p, float* sums) {
    multiply_block<Floats8, 6, 2>(patches, count, p, sums);
}

#if I2F_HAS_AVX512_LOOP
// Sixteen-float vectors, twelve rows by a whole panel: 24 of the 32 AVX-512 registers accumulate.
I2F_AVX512_LOOP void multiply_avx512(const float* patches, std::int64_t count, const Packed& p, float* sums) {
    multiply_block<Floats16, 12, 2>(patches, count, p, sums);
}
#endif

void multiply(const float* patches, std::int64_t count, const Packed& p, float* sums) {
#if I2F_HAS_AVX512_LOOP
    if (cpu_has_avx512()) return multiply_avx512(patches, count, p, sums);
#endif
    multiply_portable(patches, count, p, sums);
}

// The activations [rows][C_out] of a layer's mixed positions, kBlock positions to compute at a time
// (several blocks per work item where a block is little work).
std::unique_ptr<float[]> convolve(const Level& in, const LayerMap& map, const Packed& p, const ParallelFor& parallel_for) {
    const std::int64_t n = static_cast<std::int64_t>(map.work.size()), depth = kTaps * p.inputs, stride = p.panels * kPanel;
    std::unique_ptr<float[]> activations(new float[static_cast<std::size_t>(std::max<std::int64_t>(1, map.row_count * p.outputs))]);
    const std::int64_t blocks = (n + kBlock - 1) / kBlock;
    const std::int64_t per_item = std::max<std::int64_t>(1, kItemWork / (kBlock * depth * p.outputs));
    parallel_for((blocks + per_item - 1) / per_item, [&](std::int64_t item) {
        std::vector<float> patches(static_cast<std::size_t>(kBlock * depth)), sums(static_cast<std::size_t>(kBlock * stride));
        for (std::int64_t block = item * per_item; block < std::min(blocks, (item + 1) * per_item); ++block) {
            const std::int64_t first = block * kBlock, count = std::min(kBlock, n - first);
            const Work* block_work = map.work.data() + first;
            gather_patches(in, block_work, count, map.width, patches.data());
            multiply(patches.data(), count, p, sums.data());
            for (std::int64_t i = 0; i < count; ++i)
                std::copy_n(sums.data() + i * stride, p.outputs, activations.get() + static_cast<std::int64_t>(block_work[i].row) * p.outputs);
        }
    });
    return activations;
}

// A run of output positions: of one source (a constant, or a shared row), or of one source each.
struct Run {
    std::int64_t start, stop;
    bool shared;
};

// Each channel's row of the runs' values (row c at output + c * stride; sources[i]: position i's values).
I2F_HOT_LOOP void write_runs(const std::vector<Run>& runs, const std::vector<const float*>& sources, std::int64_t channels, float* output,
                             std::int64_t stride) {
    for (std::int64_t c = 0; c < channels; ++c) {
        float* row = output + c * stride;
        for (const Run& run : runs) {
            if (run.shared)
                std::fill(row + run.start, row + run.stop, sources[static_cast<std::size_t>(run.start)][c]);
            else
                for (std::int64_t i = run.start; i < run.stop; ++i) row[i] = sources[static_cast<std::size_t>(i)][c];
        }
    }
}

// output [C][h * w] from the last level, kPositionsPerItem positions at a time cut in runs: a run of
// one source fills each channel's row, the others read their positions' values.
void write_output(const Level& last, float* output, const ParallelFor& parallel_for) {
    const std::int64_t size = last.height * last.width, channels = last.channels;
    parallel_for((size + kPositionsPerItem - 1) / kPositionsPerItem, [&](std::int64_t item) {
        const std::int64_t first = item * kPositionsPerItem, count = std::min(kPositionsPerItem, size - first);
        std::vector<const float*> sources(static_cast<std::size_t>(count));
        for (std::int64_t i = 0; i < count; ++i) sources[static_cast<std::size_t>(i)] = last.at(first + i);
        std::vector<Run> runs;
        for (std::int64_t i = 0; i < count;) {
            std::int64_t j = i + 1;
            while (j < count && sources[static_cast<std::size_t>(j)] == sources[static_cast<std::size_t>(i)]) ++j;
            if (j - i > 1 || runs.empty() || runs.back().shared)
                runs.push_back(Run{i, j, j - i > 1});
            else
                runs.back().stop = j;
            i = j;
        }
        write_runs(runs, sources, channels, output + first, size);
    });
}

I2F_HOT_LOOP std::uint8_t largest_label(const std::uint8_t* labels, std::int64_t size) {
    std::uint8_t largest = 0;
    for (std::int64_t i = 0; i < size; ++i) largest = std::max(largest, labels[i]);
    return largest;
}

}  // namespace

std::string check_prompt_convolution(const PromptConvolutionShapes& s) {
    const std::string op = "PromptConvolution: ";
    if (s.labels[0] < 1 || s.labels[0] > kMaxSide || s.labels[1] < 1 || s.labels[1] > kMaxSide)
        return op + "labels " + dims(s.labels, 2) + " must have sides from 1 to " + std::to_string(kMaxSide);
    if (s.table[0] < 1 || s.table[0] > kMaxValues || s.table[1] < 1 || s.table[1] > kMaxChannels)
        return op + "table " + dims(s.table, 2) + " must be [V, E] with V from 1 to " + std::to_string(kMaxValues) + " and E from 1 to " +
               std::to_string(kMaxChannels);
    std::int64_t channels = s.table[1];
    for (int l = 0; l < kPromptLayers; ++l) {
        const std::string name = std::to_string(l + 1);
        const std::int64_t* w = s.weight[l];
        if (w[0] < 1 || w[0] > kMaxChannels || w[1] != channels || w[2] != 3 || w[3] != 3)
            return op + "weight" + name + " " + dims(w, 4) + " must be [C" + name + ", " + std::to_string(channels) + ", 3, 3] with C" + name +
                   " from 1 to " + std::to_string(kMaxChannels);
        if (s.bias[l] != w[0])
            return op + "bias" + name + " has " + std::to_string(s.bias[l]) + " values, expected " + std::to_string(w[0]);
        channels = w[0];
    }
    return "";
}

std::string check_prompt_convolution_labels(const PromptConvolutionShapes& s, const std::uint8_t* labels) {
    const std::int64_t size = s.labels[0] * s.labels[1];
    if (largest_label(labels, size) < s.table[0]) return "";
    const std::int64_t at = std::find_if(labels, labels + size, [&](std::uint8_t v) { return v >= s.table[0]; }) - labels;
    return "PromptConvolution: label " + std::to_string(labels[at]) + " at (" + std::to_string(at / s.labels[1]) + ", " +
           std::to_string(at % s.labels[1]) + ") is outside 0.." + std::to_string(s.table[0] - 1) + " (the table's rows)";
}

void prompt_convolution_grid(const PromptConvolutionShapes& s, std::int64_t* height, std::int64_t* width) {
    *height = s.labels[0];
    *width = s.labels[1];
    for (int l = 0; l < kPromptLayers; ++l) {
        *height = (*height + 1) / 2;
        *width = (*width + 1) / 2;
    }
}

void prompt_convolution(const PromptConvolutionShapes& s, const std::uint8_t* labels, const float* table, const float* const* weights,
                        const float* const* biases, float* output, const ParallelFor& parallel_for) {
    const std::int64_t values = s.table[0];
    const Level layer0{s.labels[0], s.labels[1], s.table[1], labels, nullptr, nullptr, nullptr};
    LayerMap map = next_map(layer0, parallel_for);
    const std::vector<float> products = tap_products(s, table, weights[0]);
    std::vector<float> constants = first_constants(products, biases[0], values, s.weight[0][0]);
    std::unique_ptr<float[]> activations = first_layer(layer0, map, products, biases[0], values, s.weight[0][0], parallel_for);
    Level level{map.height, map.width, s.weight[0][0], map.values.get(), map.rows.get(), activations.get(), constants.data()};
    for (int l = 1; l < kPromptLayers; ++l) {
        const Packed packed = pack_layer(s.weight[l], weights[l], biases[l], parallel_for);
        std::vector<float> next_constants = layer_constants(packed, level.constants, values);
        LayerMap next = next_map(level, parallel_for);
        std::unique_ptr<float[]> next_activations = convolve(level, next, packed, parallel_for);
        map = std::move(next);
        activations = std::move(next_activations);
        constants = std::move(next_constants);
        level = Level{map.height, map.width, packed.outputs, map.values.get(), map.rows.get(), activations.get(), constants.data()};
    }
    write_output(level, output, parallel_for);
}

}  // namespace i2f
