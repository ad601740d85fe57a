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
constexpr std::int64_t kChunk = 256;      // keys per chunk: its keys and values (2 x 32 KB at D = 32) stay near the core
constexpr std::int64_t kKeyTile = 32;     // keys per tile of the rotated keys

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

// The rotated keys in tiles of kKeyTile keys, each tile by dimension ([P / 32][D][32], P = N
// rounded up, zero padding): group_scores reads one contiguous 32 x D block at a time.
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

// scores[q][u] = query[q] . key_u for Rows (rotated, scaled) queries against `keys` keys from
// `tiles` (a multiple of kKeyTile), two vectors V of keys at a time, the accumulators in registers.
template <typename V, int Rows>
__attribute__((always_inline)) inline void group_scores(const float* tiles, std::int64_t keys, std::int64_t d, const float* queries,
                                                        float* __restrict scores) {
    constexpr std::int64_t lanes = sizeof(V) / sizeof(float);
    for (std::int64_t u0 = 0; u0 < keys; u0 += kKeyTile) {
        const float* tile = tiles + u0 * d;
        for (std::int64_t h = 0; h < kKeyTile; h += 2 * lanes) {
            V acc[Rows][2] = {};
            for (std::int64_t i = 0; i < d; ++i) {
                const V k0 = load_vector<V>(tile + i * kKeyTile + h), k1 = load_vector<V>(tile + i * kKeyTile + h + lanes);
#pragma GCC unroll 8
                for (int q = 0; q < Rows; ++q) {
                    acc[q][0] += k0 * queries[q * d + i];  // a vector times a scalar: one broadcast from memory
                    acc[q][1] += k1 * queries[q * d + i];
                }
            }
            for (int q = 0; q < Rows; ++q) {
                store_vector(scores + q * kChunk + u0 + h, acc[q][0]);
                store_vector(scores + q * kChunk + u0 + h + lanes, acc[q][1]);
            }
        }
    }
}

// The largest of a row's n scores.
template <typename V>
__attribute__((always_inline)) inline float row_max(const float* row, std::int64_t n) {
    constexpr std::int64_t lanes = sizeof(V) / sizeof(float);
    const std::int64_t whole = n / lanes * lanes;
    V largest_v = V{} - INFINITY;
    for (std::int64_t u = 0; u < whole; u += lanes) {
        const V value = load_vector<V>(row + u);
        largest_v = value > largest_v ? value : largest_v;
    }
    float largest = -INFINITY;
    for (int lane = 0; lane < lanes; ++lane) largest = std::max(largest, largest_v[lane]);
    for (std::int64_t u = whole; u < n; ++u) largest = std::max(largest, row[u]);
    return largest;
}

// A row of n scores -> exp(score - shift) in place (shift at least their maximum); returns their sum.
template <typename V, typename I>
__attribute__((always_inline)) inline float exponentiate(float* __restrict row, std::int64_t n, float shift) {
    constexpr std::int64_t lanes = sizeof(V) / sizeof(float);
    const std::int64_t whole = n / lanes * lanes;
    const V shift_v = V{} + shift;
    V total_v = {};
    for (std::int64_t u = 0; u < whole; u += lanes) {
        V centred = load_vector<V>(row + u) - shift_v;
        centred = centred > V{} ? V{} : centred;
        const V weights = exp_nonpositive_vector<V, I>(centred);
        store_vector(row + u, weights);
        total_v += weights;
    }
    float total = 0.0f;
    for (int lane = 0; lane < lanes; ++lane) total += total_v[lane];
    for (std::int64_t u = whole; u < n; ++u) {
        row[u] = exp_nonpositive(std::min(row[u] - shift, 0.0f));
        total += row[u];
    }
    return total;
}

// sums[q] += sum_u weights[q][u] value_u for Rows rows of weights (kChunk apart) at once, D =
// Cols vectors V, the sums in registers over the chunk, each value row loaded once for all rows.
template <typename V, int Rows, int Cols>
__attribute__((always_inline)) inline void weigh_rows(const float* weights, const float* value, std::int64_t n, float* sums) {
    constexpr std::int64_t lanes = sizeof(V) / sizeof(float);
    V acc[Rows][Cols];
    for (int q = 0; q < Rows; ++q)
        for (int c = 0; c < Cols; ++c) acc[q][c] = load_vector<V>(sums + (q * Cols + c) * lanes);
    for (std::int64_t u = 0; u < n; ++u) {
        V row[Cols];
        for (int c = 0; c < Cols; ++c) row[c] = load_vector<V>(value + (u * Cols + c) * lanes);
#pragma GCC unroll 8
        for (int q = 0; q < Rows; ++q)
            for (int c = 0; c < Cols; ++c) acc[q][c] += row[c] * weights[q * kChunk + u];
    }
    for (int q = 0; q < Rows; ++q)
        for (int c = 0; c < Cols; ++c) store_vector(sums + (q * Cols + c) * lanes, acc[q][c]);
}

// The chunk's weighted values added to the sums of the block's queries (rows past `count` are
// padding, their sums discarded); any D by the plain loop, D = 32 by weigh_rows.
template <typename V, int Rows>
__attribute__((always_inline)) inline void weigh_values(const float* weights, std::int64_t count, const float* value, std::int64_t n,
                                                        std::int64_t d, float* sums) {
    constexpr std::int64_t lanes = sizeof(V) / sizeof(float);
    for (std::int64_t q = 0; q < count; q += Rows) {
        if (d == 32) {
            weigh_rows<V, Rows, 32 / lanes>(weights + q * kChunk, value, n, sums + q * d);
            continue;
        }
        for (std::int64_t r = q; r < std::min(count, q + Rows); ++r)
            for (std::int64_t u = 0; u < n; ++u)
                for (std::int64_t i = 0; i < d; ++i) sums[r * d + i] += weights[r * kChunk + u] * value[u * d + i];
    }
}

// Queries first..end-1, a block of kQueryBlock at a time, streaming over the keys in chunks of
// kChunk: each chunk's scores, the running maximum and sum of exponentials per query (the sums
// so far rescaled when the maximum grows), and the chunk's weighted values. A block's scores
// and the chunk's keys and values stay in the core's caches. The same sums in the same order
// for a query whichever block holds it; V, I: the vector types, Rows and ValueRows: queries per
// step of the scores and of the weighted values.
template <typename V, typename I, int Rows, int ValueRows>
__attribute__((always_inline)) inline void attend_queries(const FullAttentionShapes& s, const std::vector<float>& tiles, const float* query,
                                                          const float* value, const std::int64_t* query_tokens, const float* rope_cos,
                                                          const float* rope_sin, std::int64_t first, std::int64_t end, float* output) {
    static_assert(kQueryBlock % Rows == 0 && Rows % ValueRows == 0, "a block holds whole steps");
    const std::int64_t n = s.key[0], d = s.key[1];
    const std::int64_t padded = static_cast<std::int64_t>(tiles.size()) / d;
    std::vector<float> scores(static_cast<std::size_t>(kQueryBlock * kChunk), 0.0f);
    std::vector<float> queries(static_cast<std::size_t>(kQueryBlock * d));
    std::vector<float> sums(static_cast<std::size_t>(kQueryBlock * d));
    float largest[kQueryBlock], totals[kQueryBlock];
    for (std::int64_t q0 = first; q0 < end; q0 += kQueryBlock) {
        const std::int64_t count = std::min(kQueryBlock, end - q0);
        const std::int64_t steps = (count + Rows - 1) / Rows * Rows;
        std::fill(queries.begin(), queries.end(), 0.0f);
        std::fill(sums.begin(), sums.end(), 0.0f);
        std::fill(scores.begin(), scores.end(), 0.0f);
        for (std::int64_t q = 0; q < count; ++q) {
            const std::int64_t t = query_tokens[q0 + q];
            rotate(query + (q0 + q) * d, rope_cos + t * d, rope_sin + t * d, d, s.scale, queries.data() + q * d);
            largest[q] = -INFINITY;
            totals[q] = 0.0f;
        }
        for (std::int64_t c0 = 0; c0 < n; c0 += kChunk) {
            const std::int64_t keys = std::min(kChunk, n - c0);
            const std::int64_t tiled = std::min(padded - c0, (keys + kKeyTile - 1) / kKeyTile * kKeyTile);
            for (std::int64_t q = 0; q < steps; q += Rows)
                group_scores<V, Rows>(tiles.data() + c0 * d, tiled, d, queries.data() + q * d, scores.data() + q * kChunk);
            for (std::int64_t q = 0; q < count; ++q) {
                float* row = scores.data() + q * kChunk;
                const float next = std::max(largest[q], row_max<V>(row, keys));
                const float factor = exp_nonpositive(largest[q] - next);  // 0 on the first chunk
                if (factor != 1.0f) {
                    totals[q] *= factor;
                    for (std::int64_t i = 0; i < d; ++i) sums[q * d + i] *= factor;
                }
                largest[q] = next;
                totals[q] += exponentiate<V, I>(row, keys, next);
            }
            for (std::int64_t q = count; q < steps; ++q) std::fill_n(scores.data() + q * kChunk, kChunk, 0.0f);  // padding weighs nothing
            weigh_values<V, ValueRows>(scores.data(), steps, value + c0 * d, keys, d, sums.data());
        }
        for (std::int64_t q = 0; q < count; ++q)
            for (std::int64_t i = 0; i < d; ++i) output[(q0 + q) * d + i] = sums[q * d + i] / totals[q];
    }
}

// Eight-float vectors, four queries a step of the scores and two of the weighted sums: 8
// accumulators each, with the loaded keys or values in the 16 AVX registers.
I2F_HOT_LOOP void attend_portable(const FullAttentionShapes& s, const std::vector<float>& tiles, const float* query, const float* value,
                                  const std::int64_t* query_tokens, const float* rope_cos, const float* rope_sin, std::int64_t first,
                                  std::int64_t end, float* output) {
    attend_queries<Floats8, Ints8, 4, 2>(s, tiles, query, value, query_tokens, rope_cos, rope_sin, first, end, output);
}

#if I2F_HAS_AVX512_LOOP
// Sixteen-float vectors, eight queries a step: 16 of the 32 AVX-512 registers hold the block.
I2F_AVX512_LOOP void attend_avx512(const FullAttentionShapes& s, const std::vector<float>& tiles, const float* query, const float* value,
                                   const std::int64_t* query_tokens, const float* rope_cos, const float* rope_sin, std::int64_t first,
                                   std::int64_t end, float* output) {
    attend_queries<Floats16, Ints16, 8, 8>(s, tiles, query, value, query_tokens, rope_cos, rope_sin, first, end, output);
}
#endif

void attend(const FullAttentionShapes& s, const std::vector<float>& tiles, const float* query, const float* value,
            const std::int64_t* query_tokens, const float* rope_cos, const float* rope_sin, std::int64_t first, std::int64_t end,
            float* output) {
#if I2F_HAS_AVX512_LOOP
    if (cpu_has_avx512()) return attend_avx512(s, tiles, query, value, query_tokens, rope_cos, rope_sin, first, end, output);
#endif
    attend_portable(s, tiles, query, value, query_tokens, rope_cos, rope_sin, first, end, output);
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
