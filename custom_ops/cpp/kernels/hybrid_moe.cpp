#include "hybrid_moe.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "vector_math.hpp"

namespace i2f {

namespace {

constexpr std::int64_t kMaxTokens = std::int64_t{1} << 24;
constexpr std::int64_t kMaxExperts = 1024;
constexpr std::int64_t kTileTokens = 48;  // the tokens of one parallel item: whole blocks of 6 and of 12
constexpr std::int64_t kPanel = 32;       // the columns of one packed weight panel
constexpr std::int64_t kRowStride = 1040;  // a block's token rows apart (C, H at most 1024; not a multiple of 4 KiB)

enum Weight {
    kSharedW1, kSharedB1, kSharedW2, kSharedB2, kSharedW3, kSharedB3, kSharedLnW, kSharedLnB, kSharedGateW, kSharedGateB,
    kExpertGateW, kExpertGateB, kExpertBias, kExpertsW1, kExpertsB1, kExpertsW2, kExpertsB2, kExpertsW3, kExpertsB3,
    kSelectLnW, kSelectLnB,
};  // fmt: the order of WEIGHTS

const char* const kWeightNames[kHybridMoeWeights] = {
    "shared_w1", "shared_b1", "shared_w2", "shared_b2", "shared_w3", "shared_b3", "shared_ln_w", "shared_ln_b",
    "shared_gate_w", "shared_gate_b", "expert_gate_w", "expert_gate_b", "expert_bias", "experts_w1", "experts_b1",
    "experts_w2", "experts_b2", "experts_w3", "experts_b3", "select_ln_w", "select_ln_b",
};

std::string text(const TensorDims& dims) {
    std::string out = "[";
    for (std::int64_t axis = 0; axis < dims.rank; ++axis) out += (axis ? ", " : "") + std::to_string(dims.size[axis]);
    return out + "]";
}

// b [depth][width], b(i, j) its values, in panels of kPanel columns ([panels][depth][kPanel],
// zero past width): a product's inner loop then reads one contiguous panel row per step.
template <typename Value>
std::vector<float> panels(std::int64_t depth, std::int64_t width, Value b) {
    const std::int64_t count = (width + kPanel - 1) / kPanel;
    std::vector<float> out(static_cast<std::size_t>(count * depth * kPanel), 0.0f);
    for (std::int64_t panel = 0; panel < count; ++panel)
        for (std::int64_t i = 0; i < depth; ++i)
            for (std::int64_t j = panel * kPanel; j < std::min(width, (panel + 1) * kPanel); ++j)
                out[(panel * depth + i) * kPanel + j % kPanel] = b(i, j);
    return out;
}

// values [width] zero-padded to whole panels, as a bias the products load a vector at a time
std::vector<float> padded(const float* values, std::int64_t width) {
    std::vector<float> out(static_cast<std::size_t>((width + kPanel - 1) / kPanel * kPanel), 0.0f);
    std::copy(values, values + width, out.begin());
    return out;
}

void pack(PackedExpert& e, const float* w1, const float* b1, const float* w2, const float* b2, const float* w3, const float* b3,
          const float* ln_w, const float* ln_b, std::int64_t c, std::int64_t h) {
    e.w12 = panels(c, 2 * h, [&](std::int64_t i, std::int64_t j) { return j < h ? w1[j * c + i] : w2[(j - h) * c + i]; });
    e.w3 = panels(h, c, [&](std::int64_t i, std::int64_t j) { return w3[j * h + i]; });
    std::vector<float> b12(b1, b1 + h);
    b12.insert(b12.end(), b2, b2 + h);
    e.b12 = padded(b12.data(), 2 * h), e.b3 = padded(b3, c);
    e.ln_w.assign(ln_w, ln_w + h), e.ln_b.assign(ln_b, ln_b + h);
}

// The next block's rows of x and of y (read, or written whole) asked into the caches a few lines per
// step of this block's products, so that their misses overlap the arithmetic without queueing
// up at once.
template <int Rows>
struct Lookahead {
    const float* rows[2 * Rows];
    std::int64_t count = 0, lines = 0, per_step = 0, row = 0, line = 0;

    __attribute__((always_inline)) void step() {
        for (std::int64_t k = 0; k < per_step && row < count; ++k) {
            __builtin_prefetch(rows[row] + line * 16);
            if (++line == lines) line = 0, ++row;
        }
    }
};

// out[r][j] = bias[j] + sum_i a[r][i] b[i][j] for the block's rows r < count <= Rows and j < width
// (a's rows kRowStride apart, b in panels: pack); with mix_shared, out[r][j] = mix_shared[r] *
// out[r][j] + mix_expert[r] * that instead. Rows rows by two vectors V of columns at a time, the
// accumulators in registers, each panel row loaded once for all the block's rows (a's fixed
// stride: one pointer for them all), a step of `ahead` per two vectors of columns. The same sums
// in the same order whatever V and Rows.
template <typename V, int Rows>
__attribute__((always_inline)) inline void multiply_block(const float* a, std::int64_t count, const float* b, std::int64_t depth,
                                                          std::int64_t width, const float* bias, float* const* out,
                                                          const float* mix_shared, const float* mix_expert, Lookahead<Rows>& ahead) {
    constexpr std::int64_t lanes = sizeof(V) / sizeof(float), step = 2 * lanes;
    static_assert(kPanel % step == 0, "a step of columns lies within one panel");
    for (std::int64_t j0 = 0; j0 < width; j0 += step) {
        ahead.step();
        const float* column = b + j0 / kPanel * depth * kPanel + j0 % kPanel;
        V acc[Rows][2];
#pragma GCC unroll 16
        for (int r = 0; r < Rows; ++r) acc[r][0] = load_vector<V>(bias + j0), acc[r][1] = load_vector<V>(bias + j0 + lanes);
        for (std::int64_t i = 0; i < depth; ++i) {
            const V b0 = load_vector<V>(column + i * kPanel), b1 = load_vector<V>(column + i * kPanel + lanes);
#pragma GCC unroll 16
            for (int r = 0; r < Rows; ++r) {
                const float s = a[r * kRowStride + i];
                acc[r][0] += b0 * s;
                acc[r][1] += b1 * s;
            }
        }
        for (int r = 0; r < Rows && r < count; ++r) {
            float* target = out[r] + j0;
            const std::int64_t valid = std::min(step, width - j0);
            if (valid == step && mix_shared == nullptr) {
                store_vector(target, acc[r][0]), store_vector(target + lanes, acc[r][1]);
            } else if (valid == step) {
                const V shared = V{} + mix_shared[r], expert = V{} + mix_expert[r];
                store_vector(target, load_vector<V>(target) * shared + acc[r][0] * expert);
                store_vector(target + lanes, load_vector<V>(target + lanes) * shared + acc[r][1] * expert);
            } else {  // the last columns, short of a step
                float sums[step];
                store_vector(sums, acc[r][0]), store_vector(sums + lanes, acc[r][1]);
                for (std::int64_t j = 0; j < valid; ++j)
                    target[j] = mix_shared == nullptr ? sums[j] : target[j] * mix_shared[r] + sums[j] * mix_expert[r];
            }
        }
    }
}

// SwiGLU's product and the hidden LayerNorm of one token, gate_up its gate (H values) then its
// up (H), the result into hidden. The product a vector V at a time (I: its int32 lanes); the
// statistics in sixteen lanes whatever V (the same sums).
template <typename V, typename I>
__attribute__((always_inline)) inline void swiglu_norm(const PackedExpert& e, std::int64_t h, float epsilon, float* gate_up,
                                                       float* hidden) {
    constexpr std::int64_t lanes = sizeof(V) / sizeof(float);
    float* g = gate_up;
    const float* u = g + h;
    const std::int64_t vectors = h / lanes * lanes, wide = h / 16 * 16;
    for (std::int64_t i = 0; i < vectors; i += lanes)
        store_vector(g + i, swiglu_vector<V, I>(load_vector<V>(g + i), load_vector<V>(u + i)));
    for (std::int64_t i = vectors; i < h; ++i) g[i] = g[i] * sigmoid(g[i]) * u[i];
    Floats16 sums = {};
    for (std::int64_t i = 0; i < wide; i += 16) sums += load_vector<Floats16>(g + i);
    float mean = sum16(sums);
    for (std::int64_t i = wide; i < h; ++i) mean += g[i];
    mean /= static_cast<float>(h);
    Floats16 squares = {};
    for (std::int64_t i = 0; i < wide; i += 16) {
        const Floats16 d = load_vector<Floats16>(g + i) - mean;
        squares += d * d;
    }
    float variance = sum16(squares);
    for (std::int64_t i = wide; i < h; ++i) variance += (g[i] - mean) * (g[i] - mean);
    const float inverse = 1.0f / std::sqrt(variance / static_cast<float>(h) + epsilon);
    for (std::int64_t i = 0; i < h; ++i) hidden[i] = (g[i] - mean) * inverse * e.ln_w[i] + e.ln_b[i];
}

// y[rows[t]] = expert(x[rows[t]]) for the tile's tokens; with `mix`, y[rows[t]] = mix_shared[t] *
// y[rows[t]] + mix_expert[t] * expert(x[rows[t]]) instead.
struct Tile {
    const std::int64_t* rows;
    std::int64_t count;
    const float* mix_shared = nullptr;
    const float* mix_expert = nullptr;
};

// The tile a block of Rows tokens at a time, both products and the norm between them per block
// (its tokens copied kRowStride apart), the block's data staying in L1; the second product
// writes (or mixes) straight into y.
template <typename V, typename I, int Rows>
__attribute__((always_inline)) inline void run_tile_blocks(const PackedExpert& e, std::int64_t c, std::int64_t h, float epsilon,
                                                           const float* x, const Tile& tile, float* y) {
    const std::unique_ptr<float[]> buffers(new float[Rows * (2 * kRowStride + 2 * h)]);  // (each value written before it is read)
    float* a = buffers.get();                     // [Rows][kRowStride]: the tokens
    float* hidden = a + Rows * kRowStride;      // [Rows][kRowStride]: their normed hidden values
    float* gate_up = hidden + Rows * kRowStride;  // [Rows][2H]
    float* gate_up_rows[Rows];
    float* targets[Rows];
    for (int r = 0; r < Rows; ++r) gate_up_rows[r] = gate_up + r * 2 * h;
    for (std::int64_t t0 = 0; t0 < tile.count; t0 += Rows) {
        const std::int64_t count = std::min<std::int64_t>(Rows, tile.count - t0);
        constexpr std::int64_t step = 2 * sizeof(V) / sizeof(float);
        Lookahead<Rows> ahead;
        for (std::int64_t r = t0 + Rows; r < std::min(tile.count, t0 + 2 * Rows); ++r) {
            ahead.rows[ahead.count++] = x + tile.rows[r] * c;
            ahead.rows[ahead.count++] = y + tile.rows[r] * c;
        }
        ahead.lines = (c + 15) / 16;
        const std::int64_t steps = (2 * h + step - 1) / step + (c + step - 1) / step;
        ahead.per_step = (ahead.count * ahead.lines + steps - 1) / steps;
        for (std::int64_t r = 0; r < count; ++r) {
            const float* token = x + tile.rows[t0 + r] * c;
            std::copy(token, token + c, a + r * kRowStride);
            targets[r] = y + tile.rows[t0 + r] * c;
        }
        for (std::int64_t r = count; r < Rows; ++r) {  // a short block's other rows: zeros, their sums never stored
            std::fill(a + r * kRowStride, a + r * kRowStride + c, 0.0f);
            std::fill(hidden + r * kRowStride, hidden + r * kRowStride + h, 0.0f);
        }
        const float* mix_shared = tile.mix_shared ? tile.mix_shared + t0 : nullptr;
        const float* mix_expert = tile.mix_expert ? tile.mix_expert + t0 : nullptr;
        multiply_block<V, Rows>(a, count, e.w12.data(), c, 2 * h, e.b12.data(), gate_up_rows, nullptr, nullptr, ahead);
        for (std::int64_t r = 0; r < count; ++r) swiglu_norm<V, I>(e, h, epsilon, gate_up_rows[r], hidden + r * kRowStride);
        multiply_block<V, Rows>(hidden, count, e.w3.data(), h, c, e.b3.data(), targets, mix_shared, mix_expert, ahead);
    }
}

// Six rows by sixteen columns: twelve of the sixteen AVX registers hold the block (SSE: pairs).
I2F_HOT_LOOP void run_tile_portable(const PackedExpert& e, std::int64_t c, std::int64_t h, float epsilon, const float* x,
                                    const Tile& tile, float* y) {
    run_tile_blocks<Floats8, Ints8, 6>(e, c, h, epsilon, x, tile, y);
}

#if I2F_HAS_AVX512_LOOP
// Twelve rows by thirty-two columns: 24 of the 32 AVX-512 registers hold the block, each weight
// vector loaded once for twelve tokens.
I2F_AVX512_LOOP void run_tile_avx512(const PackedExpert& e, std::int64_t c, std::int64_t h, float epsilon, const float* x,
                                     const Tile& tile, float* y) {
    run_tile_blocks<Floats16, Ints16, 12>(e, c, h, epsilon, x, tile, y);
}
#endif

void run_tile(const PackedExpert& e, std::int64_t c, std::int64_t h, float epsilon, const float* x, const Tile& tile, float* y) {
#if I2F_HAS_AVX512_LOOP
    if (cpu_has_avx512()) return run_tile_avx512(e, c, h, epsilon, x, tile, y);
#endif
    run_tile_portable(e, c, h, epsilon, x, tile, y);
}

// z[k] = sum_j x[j] w[k][j] for the rows k < rows of w [rows][c]: sixteen lanes of partial sums
// per row (four rows at a time, each x vector loaded once for them), the lanes added pairwise,
// then the tail; the same order in every version.
template <int Block>
__attribute__((always_inline)) inline void dot_block(const float* x, const float* w, std::int64_t c, float* z) {
    const std::int64_t wide = c / 16 * 16;
    Floats16 acc[Block] = {};
    for (std::int64_t j = 0; j < wide; j += 16) {
        const Floats16 xv = load_vector<Floats16>(x + j);
#pragma GCC unroll 4
        for (int k = 0; k < Block; ++k) acc[k] += xv * load_vector<Floats16>(w + k * c + j);
    }
    for (int k = 0; k < Block; ++k) {
        float total = sum16(acc[k]);
        for (std::int64_t j = wide; j < c; ++j) total += x[j] * w[k * c + j];
        z[k] = total;
    }
}

__attribute__((always_inline)) inline void dot_rows(const float* x, const float* w, std::int64_t rows, std::int64_t c, float* z) {
    std::int64_t k = 0;
    for (; k + 4 <= rows; k += 4) dot_block<4>(x, w + k * c, c, z + k);
    for (; k < rows; ++k) dot_block<1>(x, w + k * c, c, z + k);
}

I2F_HOT_LOOP void dot_rows_portable(const float* x, const float* w, std::int64_t rows, std::int64_t c, float* z) {
    dot_rows(x, w, rows, c, z);
}

#if I2F_HAS_AVX512_LOOP
I2F_AVX512_LOOP void dot_rows_avx512(const float* x, const float* w, std::int64_t rows, std::int64_t c, float* z) {
    dot_rows(x, w, rows, c, z);
}
#endif

// The gates' pre-activations of one token: z[k] = sum_j x[j] gate_w[k][j] for the E + 1 gate rows.
void gate_sums(const float* x, const float* w, std::int64_t rows, std::int64_t c, float* z) {
#if I2F_HAS_AVX512_LOOP
    if (cpu_has_avx512()) return dot_rows_avx512(x, w, rows, c, z);
#endif
    dot_rows_portable(x, w, rows, c, z);
}

std::string check_attributes(const HybridMoeShapes& s) {
    if (s.num_experts < 1 || s.num_experts > kMaxExperts)
        return "num_experts must be 1.." + std::to_string(kMaxExperts) + ", got " + std::to_string(s.num_experts);
    if (!(s.epsilon > 0.0f) || !std::isfinite(s.epsilon)) return "epsilon must be positive";
    return "";
}

// The 21 weights against the shapes C, H (shared_w1's) and E imply; `sizes` names them in the reason.
std::string check_weights(const HybridMoeShapes& s, std::int64_t c, const std::string& sizes) {
    const std::int64_t e = s.num_experts;
    const std::int64_t h = s.weights[kSharedW1].rank == 2 ? s.weights[kSharedW1].size[0] : 0;
    if (h < 1 || h > 1024) return "shared_w1 " + text(s.weights[kSharedW1]) + " must be [H, C] with H 1..1024";
    const TensorDims expected[kHybridMoeWeights] = {
        {2, {h, c}}, {1, {h}}, {2, {h, c}}, {1, {h}}, {2, {c, h}}, {1, {c}}, {1, {h}}, {1, {h}}, {2, {1, c}}, {1, {1}},
        {2, {e, c}}, {1, {e}}, {1, {e}}, {3, {e, h, c}}, {2, {e, h}}, {3, {e, h, c}}, {2, {e, h}}, {3, {e, c, h}}, {2, {e, c}},
        {1, {h}}, {1, {h}},
    };
    for (int index = 0; index < kHybridMoeWeights; ++index) {
        const TensorDims& got = s.weights[index];
        bool same = got.rank == expected[index].rank;
        for (std::int64_t axis = 0; same && axis < got.rank; ++axis) same = got.size[axis] == expected[index].size[axis];
        if (!same)
            return std::string(kWeightNames[index]) + " " + text(got) + " must be " + text(expected[index]) + " (" + sizes + "C = " +
                   std::to_string(c) + "; H = " + std::to_string(h) + "; E = " + std::to_string(e) + ")";
    }
    return "";
}

std::string check_routed(const TensorDims& dims, const std::int64_t* routed, std::int64_t n) {
    if (dims.rank != 1 || dims.size[0] < 0 || dims.size[0] > n)
        return "routed " + text(dims) + " must be [M] with M at most N = " + std::to_string(n);
    if (dims.size[0] > 0 && routed == nullptr) return "routed is missing";
    std::vector<std::uint8_t> seen(static_cast<std::size_t>(n), 0);
    for (std::int64_t j = 0; j < dims.size[0]; ++j) {
        const std::int64_t token = routed[j];
        if (token < 0 || token >= n) return "routed token " + std::to_string(token) + " is outside 0.." + std::to_string(n - 1);
        if (seen[token]) return "routed token " + std::to_string(token) + " is listed twice";
        seen[token] = 1;
    }
    return "";
}

std::string with_op(const std::string& problem) {
    return problem.empty() ? problem : "HybridMoE: " + problem;
}

}  // namespace

std::string check_hybrid_moe(const HybridMoeShapes& s, const std::int64_t* routed) {
    if (std::string problem = check_attributes(s); !problem.empty()) return with_op(problem);
    if (s.x.rank != 2 || s.x.size[0] < 1 || s.x.size[0] > kMaxTokens || s.x.size[1] < 1 || s.x.size[1] > 1024)
        return with_op("x " + text(s.x) + " must be [N, C] with N 1.." + std::to_string(kMaxTokens) + " and C 1..1024");
    const std::int64_t n = s.x.size[0], c = s.x.size[1];
    if (std::string problem = check_weights(s, c, "N = " + std::to_string(n) + "; "); !problem.empty()) return with_op(problem);
    return with_op(check_routed(s.routed, routed, n));
}

std::string check_hybrid_moe_weights(const HybridMoeShapes& s) {
    if (std::string problem = check_attributes(s); !problem.empty()) return with_op(problem);
    const TensorDims& w1 = s.weights[kSharedW1];
    const std::int64_t c = w1.rank == 2 ? w1.size[1] : 0;
    if (c < 1 || c > 1024) return with_op("shared_w1 " + text(w1) + " must be [H, C] with C 1..1024");
    return with_op(check_weights(s, c, ""));
}

std::string check_hybrid_moe_tokens(const HybridMoePacked& p, const TensorDims& x, const TensorDims& routed,
                                    const std::int64_t* routed_tokens) {
    if (x.rank != 2 || x.size[0] < 1 || x.size[0] > kMaxTokens || x.size[1] != p.c)
        return with_op("x " + text(x) + " must be [N, C] with N 1.." + std::to_string(kMaxTokens) + " and C = " + std::to_string(p.c) +
                       " (the packed weights')");
    return with_op(check_routed(routed, routed_tokens, x.size[0]));
}

std::shared_ptr<const HybridMoePacked> pack_hybrid_moe(const HybridMoeShapes& s, const float* const* w, const ParallelFor& parallel_for) {
    auto p = std::make_shared<HybridMoePacked>();
    const std::int64_t c = s.weights[kSharedW1].size[1], h = s.weights[kSharedW1].size[0], e = s.num_experts;
    p->c = c, p->h = h, p->experts = e, p->epsilon = s.epsilon;
    p->packed.resize(static_cast<std::size_t>(e + 1));
    parallel_for(e + 1, [&](std::int64_t k) {
        if (k == e)
            return pack(p->packed[k], w[kSharedW1], w[kSharedB1], w[kSharedW2], w[kSharedB2], w[kSharedW3], w[kSharedB3], w[kSharedLnW],
                        w[kSharedLnB], c, h);
        pack(p->packed[k], w[kExpertsW1] + k * h * c, w[kExpertsB1] + k * h, w[kExpertsW2] + k * h * c, w[kExpertsB2] + k * h,
             w[kExpertsW3] + k * c * h, w[kExpertsB3] + k * c, w[kSelectLnW], w[kSelectLnB], c, h);
    });
    p->gate_w.assign(w[kExpertGateW], w[kExpertGateW] + e * c);
    p->gate_w.insert(p->gate_w.end(), w[kSharedGateW], w[kSharedGateW] + c);
    p->gate_b.assign(w[kExpertGateB], w[kExpertGateB] + e);
    p->gate_b.push_back(w[kSharedGateB][0]);
    p->expert_bias.assign(w[kExpertBias], w[kExpertBias] + e);
    return p;
}

void hybrid_moe(const HybridMoePacked& p, std::int64_t n, const float* x, std::int64_t m, const std::int64_t* routed, float* y,
                const ParallelFor& parallel_for) {
    const std::int64_t c = p.c, h = p.h, e = p.experts;

    // the routed tokens' gates and experts (in routed order), then each expert's tokens in that order
    std::vector<std::int32_t> choice(static_cast<std::size_t>(m));
    std::vector<float> shared_weight(static_cast<std::size_t>(m)), expert_weight(static_cast<std::size_t>(m));
    parallel_for((m + kTileTokens - 1) / kTileTokens, [&](std::int64_t item) {
        std::vector<float> gates(static_cast<std::size_t>(e + 1));
        for (std::int64_t j = item * kTileTokens; j < std::min(m, (item + 1) * kTileTokens); ++j) {
            for (std::int64_t i = 0; j + 1 < m && i < c; i += 16) __builtin_prefetch(x + routed[j + 1] * c + i);
            gate_sums(x + routed[j] * c, p.gate_w.data(), e + 1, c, gates.data());
            for (std::int64_t k = 0; k <= e; ++k) gates[k] = 1.0f / (1.0f + std::exp(-(gates[k] + p.gate_b[k])));
            const float shared = gates[e];
            std::int32_t best = 0;
            float best_biased = -INFINITY, best_score = 0.0f;
            for (std::int64_t k = 0; k < e; ++k) {
                const float score = gates[k];
                const float biased = score + p.expert_bias[k];
                if (biased > best_biased || k == 0) best = static_cast<std::int32_t>(k), best_biased = biased, best_score = score;
            }
            choice[j] = best;
            const float top = std::max(shared, best_score);
            const float a = std::exp(shared - top), b = std::exp(best_score - top);
            shared_weight[j] = a / (a + b);
            expert_weight[j] = b / (a + b);
        }
    });
    std::vector<std::int64_t> first(static_cast<std::size_t>(e + 1), 0), by_expert(static_cast<std::size_t>(m));
    std::vector<float> by_expert_shared(static_cast<std::size_t>(m)), by_expert_weight(static_cast<std::size_t>(m));
    for (std::int64_t j = 0; j < m; ++j) ++first[choice[j] + 1];
    for (std::int64_t k = 0; k < e; ++k) first[k + 1] += first[k];
    std::vector<std::int64_t> next(first.begin(), first.end() - 1);
    for (std::int64_t j = 0; j < m; ++j) {
        const std::int64_t at = next[choice[j]]++;
        by_expert[at] = routed[j], by_expert_shared[at] = shared_weight[j], by_expert_weight[at] = expert_weight[j];
    }

    std::vector<std::int64_t> all(static_cast<std::size_t>(n));
    for (std::int64_t t = 0; t < n; ++t) all[t] = t;
    parallel_for((n + kTileTokens - 1) / kTileTokens, [&](std::int64_t item) {
        const std::int64_t begin = item * kTileTokens;
        run_tile(p.packed[e], c, h, p.epsilon, x, Tile{all.data() + begin, std::min(kTileTokens, n - begin)}, y);
    });
    // each routed token is in one tile of one expert: the tiles write disjoint rows of y
    std::vector<std::int64_t> tiles;  // (expert, begin) pairs
    for (std::int64_t k = 0; k < e; ++k)
        for (std::int64_t begin = first[k]; begin < first[k + 1]; begin += kTileTokens) tiles.insert(tiles.end(), {k, begin});
    parallel_for(static_cast<std::int64_t>(tiles.size() / 2), [&](std::int64_t item) {
        const std::int64_t k = tiles[2 * item], begin = tiles[2 * item + 1];
        const Tile tile{by_expert.data() + begin, std::min(kTileTokens, first[k + 1] - begin), by_expert_shared.data() + begin,
                        by_expert_weight.data() + begin};
        run_tile(p.packed[k], c, h, p.epsilon, x, tile, y);
    });
}

void hybrid_moe(const HybridMoeShapes& s, const float* x, const std::int64_t* routed, const float* const* weights, float* y,
                const ParallelFor& parallel_for) {
    hybrid_moe(*pack_hybrid_moe(s, weights, parallel_for), s.x.size[0], x, s.routed.size[0], routed, y, parallel_for);
}

}  // namespace i2f
