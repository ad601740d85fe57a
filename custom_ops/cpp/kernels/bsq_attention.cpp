#include "bsq_attention.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "vector_math.hpp"

namespace i2f {

namespace {

constexpr std::int64_t kMaxCodeSize = 16;
constexpr std::int64_t kMaxDim = std::int64_t{1} << 16;
constexpr std::int64_t kMaxTokens = std::int64_t{1} << 24;
constexpr std::int64_t kKeysPerItem = 256;
constexpr std::int64_t kQueriesPerItem = 32;
constexpr std::int64_t kQueryBlock = 4;
constexpr std::int64_t kCodeLanes = 2 * kLanes;  // codes per step of block_scores

std::string pair(const std::int64_t* dims) {
    return "[" + std::to_string(dims[0]) + ", " + std::to_string(dims[1]) + "]";
}

// The used codes' keys packed by dimension ([D][U], U rounded up to kCodeLanes, so a query's
// scores are contiguous), their value sums [U][D] and counts [U] (0 for the padding).
struct UsedCodes {
    std::int64_t count = 0, padded = 0;
    std::vector<float> keys_by_dim, value_sums, counts;
};

UsedCodes sum_by_code(const BsqAttentionShapes& s, const float* key, const float* value, const float* code_weight,
                      const float* code_bias, const float* code_keys, const ParallelFor& parallel_for) {
    const std::int64_t n = s.key[0], d = s.key[1], bits = s.code_size, num_codes = s.code_keys[0];
    std::vector<std::int32_t> codes(static_cast<std::size_t>(n));
    parallel_for((n + kKeysPerItem - 1) / kKeysPerItem, [&](std::int64_t item) {
        const std::int64_t end = std::min(n, (item + 1) * kKeysPerItem);
        for (std::int64_t t = item * kKeysPerItem; t < end; ++t) {
            std::int32_t code = 0;
            for (std::int64_t b = 0; b < bits; ++b) {
                float projected = 0.0f;
                for (std::int64_t i = 0; i < d; ++i) projected += key[t * d + i] * code_weight[b * d + i];
                code = 2 * code + (projected + code_bias[b] >= 0.0f ? 1 : 0);
            }
            codes[t] = code;
        }
    });
    // in key order, on one thread: the same sums whatever the thread count
    std::vector<float> sums(static_cast<std::size_t>(num_codes * d), 0.0f), counts(static_cast<std::size_t>(num_codes), 0.0f);
    for (std::int64_t t = 0; t < n; ++t) {
        float* sum = sums.data() + codes[t] * d;
        for (std::int64_t i = 0; i < d; ++i) sum[i] += value[t * d + i];
        counts[codes[t]] += 1.0f;
    }
    UsedCodes used;
    for (std::int64_t c = 0; c < num_codes; ++c) used.count += counts[c] > 0;
    const std::int64_t padded = (used.count + kCodeLanes - 1) / kCodeLanes * kCodeLanes;
    used.padded = padded;
    used.keys_by_dim.assign(static_cast<std::size_t>(d * padded), 0.0f);
    used.value_sums.assign(static_cast<std::size_t>(padded * d), 0.0f);
    used.counts.assign(static_cast<std::size_t>(padded), 0.0f);
    std::int64_t u = 0;
    for (std::int64_t c = 0; c < num_codes; ++c) {
        if (counts[c] == 0) continue;
        for (std::int64_t i = 0; i < d; ++i) used.keys_by_dim[i * padded + u] = code_keys[c * d + i];
        std::copy(sums.data() + c * d, sums.data() + (c + 1) * d, used.value_sums.data() + u * d);
        used.counts[u] = counts[c];
        ++u;
    }
    return used;
}

// scores[q][u] = scale * query[q] . key_u for up to kQueryBlock queries, 2 x 8 codes at a time,
// the block's accumulators in registers.
I2F_HOT_LOOP void block_scores(const UsedCodes& used, std::int64_t d, float scale, const float* query, std::int64_t count,
                               float* __restrict scores) {
    const std::int64_t padded = used.padded;
    std::vector<float> scaled(static_cast<std::size_t>(kQueryBlock * d), 0.0f);
    for (std::int64_t q = 0; q < count; ++q)
        for (std::int64_t i = 0; i < d; ++i) scaled[q * d + i] = query[q * d + i] * scale;
    const float* keys = used.keys_by_dim.data();
    for (std::int64_t u0 = 0; u0 < padded; u0 += 2 * kLanes) {
        Floats8 acc[kQueryBlock][2] = {};
        for (std::int64_t i = 0; i < d; ++i) {
            const Floats8 k0 = load8(keys + i * padded + u0), k1 = load8(keys + i * padded + u0 + kLanes);
            for (std::int64_t q = 0; q < kQueryBlock; ++q) {
                acc[q][0] += k0 * scaled[q * d + i];  // a vector times a scalar: one broadcast from memory
                acc[q][1] += k1 * scaled[q * d + i];
            }
        }
        for (std::int64_t q = 0; q < count; ++q) {
            store8(scores + q * padded + u0, acc[q][0]);
            store8(scores + q * padded + u0 + kLanes, acc[q][1]);
        }
    }
}

// output[v * 8 ..] = sum_u weight_u value_sum_u for V vectors of 8 columns (the accumulators in
// registers).
template <int V>
__attribute__((always_inline)) inline void weighted_sums(const float* scores, const float* sums, std::int64_t count, float* output) {
    Floats8 acc[V] = {};
    for (std::int64_t u = 0; u < count; ++u) {
        for (int v = 0; v < V; ++v) acc[v] += load8(sums + (u * V + v) * kLanes) * scores[u];
    }
    for (int v = 0; v < V; ++v) store8(output + v * kLanes, acc[v]);
}

// output = sum_u e_u value_sum_u / sum_u e_u count_u with e_u = exp(score_u - max): the
// softmax's normaliser cancels. The padding has count 0 and value sum 0.
I2F_HOT_LOOP void weigh_values(const UsedCodes& used, std::int64_t d, float* __restrict scores, float* __restrict output) {
    const std::int64_t padded = used.padded;
    Floats8 largest8 = splat8(-INFINITY);
    for (std::int64_t u = 0; u + kLanes <= used.count; u += kLanes) {
        const Floats8 value = load8(scores + u);
        largest8 = value > largest8 ? value : largest8;
    }
    float largest = -INFINITY;
    for (int lane = 0; lane < kLanes; ++lane) largest = std::max(largest, largest8[lane]);
    for (std::int64_t u = used.count / kLanes * kLanes; u < used.count; ++u) largest = std::max(largest, scores[u]);
    Floats8 denominator = {};
    const Floats8 shift = splat8(largest), zero = splat8(0.0f);
    for (std::int64_t u = 0; u < padded; u += kLanes) {
        Floats8 centred = load8(scores + u) - shift;
        centred = centred > zero ? zero : centred;
        const Floats8 weights = exp_nonpositive8(centred);
        store8(scores + u, weights);
        denominator += weights * load8(used.counts.data() + u);
    }
    const float* sums = used.value_sums.data();
    switch (d % kLanes == 0 ? d / kLanes : 0) {
        case 1: weighted_sums<1>(scores, sums, used.count, output); break;
        case 2: weighted_sums<2>(scores, sums, used.count, output); break;
        case 4: weighted_sums<4>(scores, sums, used.count, output); break;
        case 8: weighted_sums<8>(scores, sums, used.count, output); break;
        default:
            std::fill(output, output + d, 0.0f);
            for (std::int64_t u = 0; u < used.count; ++u)
                for (std::int64_t i = 0; i < d; ++i) output[i] += scores[u] * sums[u * d + i];
    }
    const float total = sum8(denominator);
    for (std::int64_t i = 0; i < d; ++i) output[i] /= total;
}

void attend(const UsedCodes& used, std::int64_t d, float scale, const float* query, std::int64_t first, std::int64_t end,
            float* output) {
    std::vector<float> scores(static_cast<std::size_t>(kQueryBlock * used.padded));
    for (std::int64_t q0 = first; q0 < end; q0 += kQueryBlock) {
        const std::int64_t count = std::min(kQueryBlock, end - q0);
        block_scores(used, d, scale, query + q0 * d, count, scores.data());
        for (std::int64_t q = 0; q < count; ++q) weigh_values(used, d, scores.data() + q * used.padded, output + (q0 + q) * d);
    }
}

}  // namespace

std::string check_bsq_attention(const BsqAttentionShapes& s) {
    const std::string op = "BSQAttention: ";
    if (s.code_size < 1 || s.code_size > kMaxCodeSize)
        return op + "code_size must be 1.." + std::to_string(kMaxCodeSize) + ", got " + std::to_string(s.code_size);
    if (!std::isfinite(s.scale)) return op + "scale must be finite";
    const std::int64_t d = s.key[1];
    if (d < 1 || d > kMaxDim) return op + "key " + pair(s.key) + " must have 1.." + std::to_string(kMaxDim) + " columns";
    if (s.key[0] < 1 || s.key[0] > kMaxTokens) return op + "key " + pair(s.key) + " must hold 1.." + std::to_string(kMaxTokens) + " tokens";
    if (s.query[0] < 0 || s.query[0] > kMaxTokens || s.query[1] != d)
        return op + "query " + pair(s.query) + " must be [M, " + std::to_string(d) + "] with M at most " + std::to_string(kMaxTokens);
    if (s.value[0] != s.key[0] || s.value[1] != d) return op + "value " + pair(s.value) + " must be key's shape " + pair(s.key);
    if (s.code_weight[0] != s.code_size || s.code_weight[1] != d)
        return op + "code_weight " + pair(s.code_weight) + " must be [code_size, D] = [" + std::to_string(s.code_size) + ", " +
               std::to_string(d) + "]";
    if (s.code_bias != s.code_size) return op + "code_bias has " + std::to_string(s.code_bias) + " values, expected code_size " + std::to_string(s.code_size);
    if (s.code_keys[0] != (std::int64_t{1} << s.code_size) || s.code_keys[1] != d)
        return op + "code_keys " + pair(s.code_keys) + " must be [2^code_size, D] = [" + std::to_string(std::int64_t{1} << s.code_size) +
               ", " + std::to_string(d) + "]";
    return "";
}

void bsq_attention(const BsqAttentionShapes& s, const float* query, const float* key, const float* value,
                   const float* code_weight, const float* code_bias, const float* code_keys, float* output,
                   const ParallelFor& parallel_for) {
    const std::int64_t m = s.query[0], d = s.key[1];
    if (m == 0) return;
    const UsedCodes used = sum_by_code(s, key, value, code_weight, code_bias, code_keys, parallel_for);
    parallel_for((m + kQueriesPerItem - 1) / kQueriesPerItem, [&](std::int64_t item) {
        attend(used, d, s.scale, query, item * kQueriesPerItem, std::min(m, (item + 1) * kQueriesPerItem), output);
    });
}

}  // namespace i2f
