// ai.inter2former::BSQAttention: attention of the non-routed tokens over the binarised key codes.
// The definition is custom_ops/bsq_attention.py (schema and ONNX function body); this computes
// the keys' codes, the per-code value sums and counts in key order, then, per query, the scores
// over the used codes, their exponentials and both weighted sums in one pass (the softmax's
// normalisation cancels in numerator / denominator).
#pragma once

#include <cstdint>
#include <string>

#include "parallel.hpp"

namespace i2f {

struct BsqAttentionShapes {
    std::int64_t query[2];        // [M, D]
    std::int64_t key[2];          // [N, D]
    std::int64_t value[2];        // [N, D]
    std::int64_t code_weight[2];  // [B, D]
    std::int64_t code_bias;       // B
    std::int64_t code_keys[2];    // [2^B, D]
    std::int64_t code_size;       // the node's attributes
    float scale;
};

// Empty when the shapes and attributes fit the op's schema; else a one-line reason.
std::string check_bsq_attention(const BsqAttentionShapes& shapes);

// output [M, D]. The inputs must have passed check_bsq_attention.
void bsq_attention(const BsqAttentionShapes& shapes, const float* query, const float* key, const float* value,
                   const float* code_weight, const float* code_bias, const float* code_keys, float* output,
                   const ParallelFor& parallel_for);

}  // namespace i2f
