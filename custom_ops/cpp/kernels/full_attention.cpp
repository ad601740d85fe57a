#include "full_attention.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "vector_math.hpp"

namespace i2f {

namespace {

constexpr std::int64_t kMaxDim = std::int64_t{1} << 12;
constexpr std::int64_t kMaxTokens = std::int64_t{1} << 24;
constexpr std::int64_t kKeysPerItem = 256;
constexpr std::int64_t kQueriesPerItem = 32;
constexpr std::int64_t kQueryBlock = 16;  // queries sharing each chunk of keys and values
constexpr std::int64_t kQueryGroup = 4;   // queries per step of group_scores
constexpr std::int64_t kChunk = 256;      // keys per chunk: its keys and values (2 x 32 KB at D = 32) stay near the core
constexpr std::int64_t kKeyTile = 2 * kLanes;  // keys per step of group_scores

std::string pair(const std::int64_t* dims) {
    return "[" + std::to_string(dims[0]) + ", " + std::to_string(dims[1]) + "]";
}

// x of token row `t` rotated: (a, b) -> a * cos + b * sin, b * cos - a * sin on each interleaved pair.
inline void rotate(const float* x, const float* cos, const float* sin, std::int64_t d, float scale, float* out) {
    for (std::int64_t i = 0; i < d; i += 2) {
        out[i] = (x[i] * cos[i] + x[i + 1] * sin[i]) * scale;
        out[i + 1] = (x[i + 1] * cos[i + 1] - x[i] * sin[i + 1]) * scale;
    }
}

// The rotated keys in tiles of kKeyTile keys, each tile by dimension ([P / 16][D][16], P = N
// rounded up, zero padding): a step of group_scores reads one contiguous 16 x D block.
std::vector<float> rotated_key_tiles(const FullAttentionShapes& s, const float* key, const float* rope_cos, const float* rope_sin,
                                     const ParallelFor& parallel_for) {
    const std::int64_t n = s.key[0], d = s.key[1];
    const std::int64_t padded = (n + kKeyTile - 1) / kKeyTile * kKeyTile;
    std::vector<float> tiles(static_cast<std::size_t>(padded * d), 0.0f);
    parallel_for((n + kKeysPerItem - 1) / kKeysPerItem, [&](std::int64_t item) {
        std::vector<float> row(static_cast<std::size_t>(d));
        const std::int64_t end = std::min(n, (item + 1) * kKeysPerItem);
        for (std::int64_t t = item * kKeysPerItem; t < end; ++t) {
            rotate(key + t * d, rope_cos + t * d, rope_sin + t * d, d, 1.0f, row.data());
            float* tile = tiles.data() + (t / kKeyTile) * kKeyTile * d + t % kKeyTile;
            for (std::int64_t i = 0; i < d; ++i) tile[i * kKeyTile] = row[i];
        }
    });
    return tiles;
}

// scores[q][u] = query[q] . key_u for kQueryGroup (rotated, scaled) queries against `keys` keys
// from `tiles` (a multiple of kKeyTile), 16 keys at a time, the group's accumulators in registers.
I2F_HOT_LOOP void group_scores(const float* tiles, std::int64_t keys, std::int64_t d, const float* queries, float* __restrict scores) {
    for (std::int64_t u0 = 0; u0 < keys; u0 += kKeyTile) {
        const float* tile = tiles + u0 * d;
        Floats8 acc[kQueryGroup][2] = {};
        for (std::int64_t i = 0; i < d; ++i) {
            const Floats8 k0 = load8(tile + i * kKeyTile), k1 = load8(tile + i * kKeyTile + kLanes);
            for (std::int64_t q = 0; q < kQueryGroup; ++q) {
                acc[q][0] += k0 * queries[q * d + i];  // a vector times a scalar: one broadcast from memory
                acc[q][1] += k1 * queries[q * d + i];
            }
        }
        for (std::int64_t q = 0; q < kQueryGroup; ++q) {
            store8(scores + q * kChunk + u0, acc[q][0]);
            store8(scores + q * kChunk + u0 + kLanes, acc[q][1]);
        }
    }
}

// The largest of a row's n scores.
I2F_HOT_LOOP float row_max(const float* row, std::int64_t n) {
    const std::int64_t whole = n / kLanes * kLanes;
    Floats8 largest8 = splat8(-INFINITY);
    for (std::int64_t u = 0; u < whole; u += kLanes) {
        const Floats8 value = load8(row + u);
        largest8 = value > largest8 ? value : largest8;
    }
    float largest = -INFINITY;
    for (int lane = 0; lane < kLanes; ++lane) largest = std::max(largest, largest8[lane]);
    for (std::int64_t u = whole; u < n; ++u) largest = std::max(largest, row[u]);
    return largest;
}

// A row of n scores -> exp(score - shift) in place (shift at least their maximum); returns their sum.
I2F_HOT_LOOP float exponentiate(float* __restrict row, std::int64_t n, float shift) {
    const std::int64_t whole = n / kLanes * kLanes;
    const Floats8 shift8 = splat8(shift), zero = splat8(0.0f);
    Floats8 total8 = {};
    for (std::int64_t u = 0; u < whole; u += kLanes) {
        Floats8 centred = load8(row + u) - shift8;
        centred = centred > zero ? zero : centred;
        const Floats8 weights = exp_nonpositive8(centred);
        store8(row + u, weights);
        total8 += weights;
    }
    float total = sum8(total8);
    for (std::int64_t u = whole; u < n; ++u) {
        row[u] = exp_nonpositive(std::min(row[u] - shift, 0.0f));
        total += row[u];
    }
    return total;
}

// acc[q] += sum_u weights[q][u] value_u for two rows of weights at once (V vectors of 8 columns
// each, the sums in registers over the chunk, each value row loaded once for both).
template <int V>
__attribute__((always_inline)) inline void weigh_two(const float* w0, const float* w1, const float* value, std::int64_t n,
                                                     float* acc0, float* acc1) {
    Floats8 sum0[V], sum1[V];
    for (int v = 0; v < V; ++v) sum0[v] = load8(acc0 + v * kLanes), sum1[v] = load8(acc1 + v * kLanes);
    for (std::int64_t u = 0; u < n; ++u) {
        for (int v = 0; v < V; ++v) {
            const Floats8 row = load8(value + (u * V + v) * kLanes);
            sum0[v] += row * w0[u];
            sum1[v] += row * w1[u];
        }
    }
    for (int v = 0; v < V; ++v) store8(acc0 + v * kLanes, sum0[v]), store8(acc1 + v * kLanes, sum1[v]);
}

// The chunk's weighted values added to each query's sums (rows of `weights` kChunk apart).
I2F_HOT_LOOP void weigh_values(const float* weights, std::int64_t count, const float* value, std::int64_t n, std::int64_t d,
                               float* sums) {
    for (std::int64_t q = 0; q < count; q += 2) {
        const float* w0 = weights + q * kChunk;
        const float* w1 = w0 + kChunk;  // past the last query: a padding row, its sums discarded
        float* acc0 = sums + q * d;
        float* acc1 = acc0 + d;
        switch (d % kLanes == 0 ? d / kLanes : 0) {
            case 1: weigh_two<1>(w0, w1, value, n, acc0, acc1); break;
            case 2: weigh_two<2>(w0, w1, value, n, acc0, acc1); break;
            case 4: weigh_two<4>(w0, w1, value, n, acc0, acc1); break;
            case 8: weigh_two<8>(w0, w1, value, n, acc0, acc1); break;
            default:
                for (std::int64_t u = 0; u < n; ++u)
                    for (std::int64_t i = 0; i < d; ++i) {
                        acc0[i] += w0[u] * value[u * d + i];
                        acc1[i] += w1[u] * value[u * d + i];
                    }
        }
    }
}

// Queries first..end-1, a block of kQueryBlock at a time, streaming over the keys in chunks of
// kChunk: each chunk's scores, the running maximum and sum of exponentials per query (the sums
// so far rescaled when the maximum grows), and the chunk's weighted values. A block's scores
// and the chunk's keys and values stay in the core's caches.
void attend(const FullAttentionShapes& s, const std::vector<float>& tiles, const float* query, const float* value,
            const std::int64_t* query_tokens, const float* rope_cos, const float* rope_sin, std::int64_t first, std::int64_t end,
            float* output) {
    const std::int64_t n = s.key[0], d = s.key[1];
    const std::int64_t padded = static_cast<std::int64_t>(tiles.size()) / d;
    std::vector<float> scores(static_cast<std::size_t>(kQueryBlock * kChunk), 0.0f);
    std::vector<float> queries(static_cast<std::size_t>(kQueryBlock * d));
    std::vector<float> sums(static_cast<std::size_t>(kQueryBlock * d));
    float largest[kQueryBlock], totals[kQueryBlock];
    for (std::int64_t q0 = first; q0 < end; q0 += kQueryBlock) {
        const std::int64_t count = std::min(kQueryBlock, end - q0);
        std::fill(queries.begin(), queries.end(), 0.0f);
        std::fill(sums.begin(), sums.end(), 0.0f);
        for (std::int64_t q = 0; q < count; ++q) {
            const std::int64_t t = query_tokens[q0 + q];
            rotate(query + (q0 + q) * d, rope_cos + t * d, rope_sin + t * d, d, s.scale, queries.data() + q * d);
            largest[q] = -INFINITY;
            totals[q] = 0.0f;
        }
        const std::int64_t groups = (count + kQueryGroup - 1) / kQueryGroup;
        for (std::int64_t c0 = 0; c0 < n; c0 += kChunk) {
            const std::int64_t keys = std::min(kChunk, n - c0);
            const std::int64_t tiled = std::min(padded - c0, (keys + kKeyTile - 1) / kKeyTile * kKeyTile);
            for (std::int64_t g = 0; g < groups; ++g)
                group_scores(tiles.data() + c0 * d, tiled, d, queries.data() + g * kQueryGroup * d, scores.data() + g * kQueryGroup * kChunk);
            for (std::int64_t q = 0; q < count; ++q) {
                float* row = scores.data() + q * kChunk;
                const float next = std::max(largest[q], row_max(row, keys));
                const float factor = exp_nonpositive(largest[q] - next);  // 0 on the first chunk
                if (factor != 1.0f) {
                    totals[q] *= factor;
                    for (std::int64_t i = 0; i < d; ++i) sums[q * d + i] *= factor;
                }
                largest[q] = next;
                totals[q] += exponentiate(row, keys, next);
            }
            weigh_values(scores.data(), count, value + c0 * d, keys, d, sums.data());
        }
        for (std::int64_t q = 0; q < count; ++q)
            for (std::int64_t i = 0; i < d; ++i) output[(q0 + q) * d + i] = sums[q * d + i] / totals[q];
    }
}

}  // namespace

std::string check_full_attention(const FullAttentionShapes& s) {
    const std::string op = "FullAttention: ";
    if (!std::isfinite(s.scale)) return op + "scale must be finite";
    const std::int64_t d = s.key[1];
    if (d < 2 || d > kMaxDim || d % 2 != 0)
        return op + "key " + pair(s.key) + " must have an even number of columns, 2.." + std::to_string(kMaxDim);
    if (s.key[0] < 1 || s.key[0] > kMaxTokens) return op + "key " + pair(s.key) + " must hold 1.." + std::to_string(kMaxTokens) + " tokens";
    if (s.query[0] < 0 || s.query[0] > kMaxTokens || s.query[1] != d)
        return op + "query " + pair(s.query) + " must be [M, " + std::to_string(d) + "] with M at most " + std::to_string(kMaxTokens);
    if (s.value[0] != s.key[0] || s.value[1] != d) return op + "value " + pair(s.value) + " must be key's shape " + pair(s.key);
    if (s.query_tokens != s.query[0])
        return op + "query_tokens has " + std::to_string(s.query_tokens) + " values for " + std::to_string(s.query[0]) + " queries";
    if (s.rope_cos[0] != s.key[0] || s.rope_cos[1] != d) return op + "rope_cos " + pair(s.rope_cos) + " must be key's shape " + pair(s.key);
    if (s.rope_sin[0] != s.key[0] || s.rope_sin[1] != d) return op + "rope_sin " + pair(s.rope_sin) + " must be key's shape " + pair(s.key);
    return "";
}

std::string check_full_attention_tokens(const FullAttentionShapes& s, const std::int64_t* query_tokens) {
    const std::int64_t n = s.key[0];
    for (std::int64_t q = 0; q < s.query[0]; ++q)
        if (query_tokens[q] < 0 || query_tokens[q] >= n)
            return "FullAttention: query token " + std::to_string(query_tokens[q]) + " is outside 0.." + std::to_string(n - 1);
    return "";
}

void full_attention(const FullAttentionShapes& s, const float* query, const float* key, const float* value,
                    const std::int64_t* query_tokens, const float* rope_cos, const float* rope_sin, float* output,
                    const ParallelFor& parallel_for) {
    const std::int64_t m = s.query[0];
    if (m == 0) return;
    const std::vector<float> tiles = rotated_key_tiles(s, key, rope_cos, rope_sin, parallel_for);
    parallel_for((m + kQueriesPerItem - 1) / kQueriesPerItem, [&](std::int64_t item) {
        attend(s, tiles, query, value, query_tokens, rope_cos, rope_sin, item * kQueriesPerItem, std::min(m, (item + 1) * kQueriesPerItem),
               output);
    });
}

}  // namespace i2f
