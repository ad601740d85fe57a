#include "hybrid_moe.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "vector_math.hpp"

namespace i2f {

namespace {

constexpr std::int64_t kMaxTokens = std::int64_t{1} << 24;
constexpr std::int64_t kMaxExperts = 1024;
constexpr std::int64_t kTileTokens = 16;

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

void pack(PackedExpert& e, const float* w1, const float* b1, const float* w2, const float* b2, const float* w3, const float* b3,
          const float* ln_w, const float* ln_b, std::int64_t c, std::int64_t h) {
    e.w12.resize(static_cast<std::size_t>(2 * c * h)), e.w3.resize(static_cast<std::size_t>(c * h));
    for (std::int64_t i = 0; i < h; ++i) {
        for (std::int64_t j = 0; j < c; ++j) {
            e.w12[j * 2 * h + i] = w1[i * c + j];
            e.w12[j * 2 * h + h + i] = w2[i * c + j];
            e.w3[i * c + j] = w3[j * h + i];
        }
    }
    e.b12.assign(b1, b1 + h);
    e.b12.insert(e.b12.end(), b2, b2 + h);
    e.b3.assign(b3, b3 + c);
    e.ln_w.assign(ln_w, ln_w + h), e.ln_b.assign(ln_b, ln_b + h);
}

// out[t][j] = bias[j] + sum_i a[t][i] b[i][j] for the tile's rows a[t] (t < count <= kTileTokens):
// Rows rows by two vectors V of columns at a time, the accumulators in registers; b is
// [depth][width]. The same sums in the same order whatever V and Rows.
template <typename V, int Rows>
__attribute__((always_inline)) inline void multiply_rows(const float* const* a, std::int64_t count, const float* b,
                                                         std::int64_t depth, std::int64_t width, const float* bias, float* out) {
    constexpr std::int64_t lanes = sizeof(V) / sizeof(float);
    const std::int64_t wide = width / (2 * lanes) * (2 * lanes);
    for (std::int64_t t0 = 0; t0 < count; t0 += Rows) {
        const float* rows[Rows];
        for (int r = 0; r < Rows; ++r) rows[r] = a[std::min<std::int64_t>(t0 + r, count - 1)];  // a short block repeats its last row
        for (std::int64_t j0 = 0; j0 < wide; j0 += 2 * lanes) {
            V acc[Rows][2];
#pragma GCC unroll 16
            for (int r = 0; r < Rows; ++r) acc[r][0] = load_vector<V>(bias + j0), acc[r][1] = load_vector<V>(bias + j0 + lanes);
            for (std::int64_t i = 0; i < depth; ++i) {
                const V b0 = load_vector<V>(b + i * width + j0), b1 = load_vector<V>(b + i * width + j0 + lanes);
#pragma GCC unroll 16
                for (int r = 0; r < Rows; ++r) {
                    acc[r][0] += b0 * rows[r][i];  // a vector times a scalar: one broadcast from memory
                    acc[r][1] += b1 * rows[r][i];
                }
            }
            for (int r = 0; r < Rows && t0 + r < count; ++r) {
                store_vector(out + (t0 + r) * width + j0, acc[r][0]);
                store_vector(out + (t0 + r) * width + j0 + lanes, acc[r][1]);
            }
        }
        for (int r = 0; r < Rows && t0 + r < count; ++r) {
            for (std::int64_t j = wide; j < width; ++j) {
                float total = bias[j];
                for (std::int64_t i = 0; i < depth; ++i) total += rows[r][i] * b[i * width + j];
                out[(t0 + r) * width + j] = total;
            }
        }
    }
}

// Four rows by sixteen columns: sixteen AVX registers (or SSE pairs) hold the block.
I2F_HOT_LOOP void multiply_tile_portable(const float* const* a, std::int64_t count, const float* b, std::int64_t depth,
                                         std::int64_t width, const float* bias, float* out) {
    multiply_rows<Floats8, 4>(a, count, b, depth, width, bias, out);
}

#if I2F_HAS_AVX512_LOOP
// Eight rows by thirty-two columns: sixteen of the 32 AVX-512 registers hold the block, each
// weight vector loaded once for eight tokens (docs/performance.md has the measured gain).
I2F_AVX512_LOOP void multiply_tile_avx512(const float* const* a, std::int64_t count, const float* b, std::int64_t depth,
                                          std::int64_t width, const float* bias, float* out) {
    multiply_rows<Floats16, 8>(a, count, b, depth, width, bias, out);
}
#endif

void multiply_tile(const float* const* a, std::int64_t count, const float* b, std::int64_t depth, std::int64_t width,
                   const float* bias, float* out) {
#if I2F_HAS_AVX512_LOOP
    if (cpu_has_avx512()) return multiply_tile_avx512(a, count, b, depth, width, bias, out);
#endif
    multiply_tile_portable(a, count, b, depth, width, bias, out);
}

// out[t] = expert(x[rows[t]]) for the tile's tokens; with `mix`, y[rows[t]] = mix_shared[t] *
// y[rows[t]] + mix_expert[t] * out[t] instead of y[rows[t]] = out[t].
struct Tile {
    const std::int64_t* rows;
    std::int64_t count;
    const float* mix_shared = nullptr;
    const float* mix_expert = nullptr;
};

I2F_HOT_LOOP void run_tile(const PackedExpert& e, std::int64_t c, std::int64_t h, float epsilon, const float* x, const Tile& tile, float* y) {
    const std::int64_t count = tile.count;
    std::vector<float> buffers(static_cast<std::size_t>(count * (2 * h + c)));
    float* gate_up = buffers.data();  // per token its gate (H values) then its up (H)
    float* out = gate_up + count * 2 * h;
    const float* rows[kTileTokens] = {};
    for (std::int64_t t = 0; t < count; ++t) rows[t] = x + tile.rows[t] * c;
    multiply_tile(rows, count, e.w12.data(), c, 2 * h, e.b12.data(), gate_up);
    for (std::int64_t t = 0; t < count; ++t) {
        float* g = gate_up + t * 2 * h;
        const float* u = g + h;
        const std::int64_t vectors = h / kLanes * kLanes;
        for (std::int64_t i = 0; i < vectors; i += kLanes) store8(g + i, swiglu8(load8(g + i), load8(u + i)));
        for (std::int64_t i = vectors; i < h; ++i) g[i] = g[i] * sigmoid(g[i]) * u[i];
        Floats8 sums = splat8(0.0f);
        for (std::int64_t i = 0; i < vectors; i += kLanes) sums += load8(g + i);
        float mean = sum8(sums);
        for (std::int64_t i = vectors; i < h; ++i) mean += g[i];
        mean /= static_cast<float>(h);
        Floats8 squares = splat8(0.0f);
        for (std::int64_t i = 0; i < vectors; i += kLanes) {
            const Floats8 d = load8(g + i) - mean;
            squares += d * d;
        }
        float variance = sum8(squares);
        for (std::int64_t i = vectors; i < h; ++i) variance += (g[i] - mean) * (g[i] - mean);
        const float inverse = 1.0f / std::sqrt(variance / static_cast<float>(h) + epsilon);
        for (std::int64_t i = 0; i < h; ++i) g[i] = (g[i] - mean) * inverse * e.ln_w[i] + e.ln_b[i];
        rows[t] = g;
    }
    multiply_tile(rows, count, e.w3.data(), h, c, e.b3.data(), out);
    for (std::int64_t t = 0; t < count; ++t) {
        float* target = y + tile.rows[t] * c;
        const float* o = out + t * c;
        if (tile.mix_shared == nullptr) {
            std::copy(o, o + c, target);
        } else {
            const float shared = tile.mix_shared[t], expert = tile.mix_expert[t];
            for (std::int64_t j = 0; j < c; ++j) target[j] = target[j] * shared + o[j] * expert;
        }
    }
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
        float lanes[16];
        store_vector(lanes, acc[k]);
        float total = sum8(load8(lanes) + load8(lanes + 8));
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
