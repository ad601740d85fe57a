// ai.inter2former::DLUUpsample: the x2 upsampling of one DLU stage from its mixed tap maps.
// The definition is custom_ops/dlu_upsample.py (schema and ONNX function body); this is the
// same arithmetic fused, tile by tile, over plain pointers and sizes.
#pragma once

#include <cstdint>
#include <string>

#include "parallel.hpp"

namespace i2f {

struct DluUpsampleShapes {
    std::int64_t mixed[4];        // [1, 9C, h+4, w+4]
    std::int64_t edge_map[4];     // [1, E, 2H, 2W]
    std::int64_t edge_term[4];    // [1, 4C, H, W]
    std::int64_t edge_weight[4];  // [C, E, 3, 3]
    std::int64_t box_size;        // 4
    std::int64_t channels;        // the node's attribute: C
};

// Empty when the shapes and the box fit the op's schema; else a one-line reason.
std::string check_dlu_upsample(const DluUpsampleShapes& shapes, const std::int64_t* box);

// y [1, C, 2h, 2w]. The inputs must have passed check_dlu_upsample.
void dlu_upsample(const DluUpsampleShapes& shapes, const float* mixed, const float* edge_map, const float* edge_term,
                  const float* edge_weight, const std::int64_t* box, float* y, const ParallelFor& parallel_for);

}  // namespace i2f
