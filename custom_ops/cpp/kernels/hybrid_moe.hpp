// ai.inter2former::HybridMoE: the shared SwiGLU expert on every token, the top-1 routed expert on
// the routed ones. The definition is custom_ops/hybrid_moe.py (schema and ONNX function body);
// this runs the shared expert over tiles of tokens straight into y, then each routed expert over
// tiles of its tokens, reading x and mixing into y by token index (no gathered copies).
#pragma once

#include <cstdint>
#include <string>

#include "parallel.hpp"

namespace i2f {

// A tensor's rank and (up to three) dimensions.
struct TensorDims {
    std::int64_t rank = 0;
    std::int64_t size[3] = {0, 0, 0};
};

constexpr int kHybridMoeWeights = 21;  // custom_ops/hybrid_moe.py WEIGHTS, in that order

struct HybridMoeShapes {
    TensorDims x;       // [N, C]
    TensorDims routed;  // [M]
    TensorDims weights[kHybridMoeWeights];
    std::int64_t num_experts;  // the node's attributes
    float epsilon;
};

// Empty when the shapes, the attributes and the routed indices (distinct, in 0..N-1) fit the
// op's schema; else a one-line reason.
std::string check_hybrid_moe(const HybridMoeShapes& shapes, const std::int64_t* routed);

// y [N, C]. weights: the 21 tensors of WEIGHTS. The inputs must have passed check_hybrid_moe.
void hybrid_moe(const HybridMoeShapes& shapes, const float* x, const std::int64_t* routed, const float* const* weights,
                float* y, const ParallelFor& parallel_for);

}  // namespace i2f
