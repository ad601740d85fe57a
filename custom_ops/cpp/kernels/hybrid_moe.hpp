// ai.inter2former::HybridMoE: the shared SwiGLU expert on every token, the top-1 routed expert on
// the routed ones. The definition is custom_ops/hybrid_moe.py (schema and ONNX function body);
// this runs the shared expert over tiles of tokens straight into y, then each routed expert over
// tiles of its tokens, reading x and mixing into y by token index (no gathered copies beyond a
// block of a dozen tokens). The experts' weights are packed for those products once per weight
// set (HybridMoePacked), which a caller whose weights are constants keeps and reuses from call to call.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

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

// Empty when the weights and the attributes fit the schema on their own (C read from shared_w1;
// shapes.x and shapes.routed are not read); else a one-line reason.
std::string check_hybrid_moe_weights(const HybridMoeShapes& shapes);

// One SwiGLU expert packed for its two products: w1 and w2 side by side as one [C][2H] matrix (a
// token's gate and up in one product), w3 as [H][C], each in panels of 32 columns
// ([panels][depth][32], zero-padded, their biases too) so that the inner loop reads one
// contiguous panel row per step; ln is its hidden LayerNorm.
struct PackedExpert {
    std::vector<float> w12, b12, w3, b3, ln_w, ln_b;
};

// A weight set packed for the kernel: its own copies, so it never reads the caller's tensors again.
struct HybridMoePacked {
    std::int64_t c = 0, h = 0, experts = 0;
    float epsilon = 0.0f;
    std::vector<PackedExpert> packed;  // the routed experts 0..E-1, then the shared one
    std::vector<float> gate_w, gate_b;  // [E + 1][C] and [E + 1]: the experts' gates, then the shared one
    std::vector<float> expert_bias;
};

// The weights (the 21 tensors of WEIGHTS) packed once; they must have passed check_hybrid_moe_weights.
std::shared_ptr<const HybridMoePacked> pack_hybrid_moe(const HybridMoeShapes& shapes, const float* const* weights,
                                                       const ParallelFor& parallel_for);

// Empty when x [N, C] (C the packed weights') and the routed indices fit; else a one-line reason.
std::string check_hybrid_moe_tokens(const HybridMoePacked& packed, const TensorDims& x, const TensorDims& routed,
                                    const std::int64_t* routed_tokens);

// y [N, C] from packed weights. The inputs must have passed check_hybrid_moe_tokens.
void hybrid_moe(const HybridMoePacked& packed, std::int64_t n, const float* x, std::int64_t m, const std::int64_t* routed, float* y,
                const ParallelFor& parallel_for);

// y [N, C], the weights packed for this call only. The inputs must have passed check_hybrid_moe.
void hybrid_moe(const HybridMoeShapes& shapes, const float* x, const std::int64_t* routed, const float* const* weights,
                float* y, const ParallelFor& parallel_for);

}  // namespace i2f
