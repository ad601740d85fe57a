// ai.inter2former::FullAttention: the routed tokens' softmax attention over all keys, with 2-D RoPE.
// The definition is custom_ops/full_attention.py (schema and ONNX function body); this rotates the
// keys once, then per block of queries computes their scores against every key, the exact
// softmax of each row and its product with the values, so only a few rows of scores exist at a
// time (never the [M, N] matrix).
#pragma once

#include <cstdint>
#include <string>

#include "parallel.hpp"

namespace i2f {

struct FullAttentionShapes {
    std::int64_t query[2];     // [M, D]
    std::int64_t key[2];       // [N, D]
    std::int64_t value[2];     // [N, D]
    std::int64_t query_tokens;  // M
    std::int64_t rope_cos[2];  // [N, D]
    std::int64_t rope_sin[2];  // [N, D]
    float scale;               // the node's attribute
};

// Empty when the shapes and the attribute fit the op's schema; else a one-line reason.
std::string check_full_attention(const FullAttentionShapes& shapes);

// Empty when every query token is a token of the key grid; else a one-line reason.
std::string check_full_attention_tokens(const FullAttentionShapes& shapes, const std::int64_t* query_tokens);

// output [M, D]. The inputs must have passed both checks.
void full_attention(const FullAttentionShapes& shapes, const float* query, const float* key, const float* value,
                    const std::int64_t* query_tokens, const float* rope_cos, const float* rope_sin, float* output,
                    const ParallelFor& parallel_for);

}  // namespace i2f
