// ai.inter2former::TokenRouting: which tokens take full attention, and the DPE box, from the
// prompt map. The definition is custom_ops/token_routing.py (schema and ONNX function body);
// this is the same decision in two passes over the uint8 map: per pixel row, the block maxima of
// each token cell (whole cell, its first and last `reach` pixels); then per token row.
#pragma once

#include <cstdint>
#include <string>

#include "parallel.hpp"

namespace i2f {

struct TokenRoutingShapes {
    std::int64_t ref_label[4];  // [1, 1, H, W]
    std::int64_t stride;        // the node's attributes
    std::int64_t kernel_size;
};

// Empty when the shapes and attributes fit the op's schema; else a one-line reason.
std::string check_token_routing(const TokenRoutingShapes& shapes);

// The number of tokens, H * W / stride^2 (the length of token_order).
std::int64_t routing_tokens(const TokenRoutingShapes& shapes);

// Empty when every label is a prompt-map value (0..4); else a one-line reason.
std::string check_token_routing_labels(const TokenRoutingShapes& shapes, const std::uint8_t* ref_label);

// Writes token_order [tokens] and dpe_box [4]; returns num_routed. The shapes must have passed
// check_token_routing (the labels are read as the function body reads them, whatever they are).
std::int64_t token_routing(const TokenRoutingShapes& shapes, const std::uint8_t* ref_label, std::int64_t* token_order,
                           std::int64_t* dpe_box, const ParallelFor& parallel_for);

}  // namespace i2f
