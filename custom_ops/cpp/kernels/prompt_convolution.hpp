// ai.inter2former::PromptConvolution: DPE's four 3x3 stride-2 convolutions (ReLU) on the embedded
// prompt map. The definition is custom_ops/prompt_convolution.py (schema and ONNX function body).
// This computes the same values while convolving only the positions whose receptive field
// crosses a change of prompt value or the map's border: every other position of a layer holds the
// constant of its one value (the stack run on the constant map), computed once per call. Layer 1
// reads table rows only, so its positions add nine products (of a tap and a value) computed once;
// layers 2 to 4 gather their positions' 3 x 3 patches in blocks and multiply them by the weights,
// repacked per call for the block products. Along the map's border, where positions read the same
// inputs as their neighbour (padding and one value), one activation serves them all.
#pragma once

#include <cstdint>
#include <string>

#include "parallel.hpp"

namespace i2f {

constexpr int kPromptLayers = 4;

struct PromptConvolutionShapes {
    std::int64_t labels[2];                 // [H, W]
    std::int64_t table[2];                  // [V, E]
    std::int64_t weight[kPromptLayers][4];  // layer l: [C_l, C_(l-1), 3, 3], C_0 = E
    std::int64_t bias[kPromptLayers];       // layer l: C_l values
};

// Empty when the shapes fit the op's schema; else a one-line reason.
std::string check_prompt_convolution(const PromptConvolutionShapes& shapes);

// Empty when every label is a row of the table (0..V-1); else a one-line reason.
std::string check_prompt_convolution_labels(const PromptConvolutionShapes& shapes, const std::uint8_t* labels);

// [h, w] of the output's grid: each layer halves a side, rounding up.
void prompt_convolution_grid(const PromptConvolutionShapes& shapes, std::int64_t* height, std::int64_t* width);

// output [1, C_4, h, w]. The inputs must have passed both checks.
void prompt_convolution(const PromptConvolutionShapes& shapes, const std::uint8_t* labels, const float* table,
                        const float* const* weights, const float* const* biases, float* output, const ParallelFor& parallel_for);

}  // namespace i2f
