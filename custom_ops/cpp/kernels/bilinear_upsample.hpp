// The decoder's logits bilinear to the image (i2f_deploy/preprocess.py, logits_to_image and
// logits_to_mask): not an op of the graph but the click's last step, on given taps. The taps
// (indices and weights per output row and column) are computed in Python, where PyTorch's
// rounding is encoded; this is the two passes of preprocess._combine_float32 row by row, with
// each product and each sum rounded to float32 as NumPy rounds them (the file is compiled
// without floating-point contraction), so the results are NumPy's to the bit. The horizontal pass
// has an AVX-512 version, chosen at run time like the other kernels' (vector_math.hpp).
#pragma once

#include <cstdint>
#include <string>

#include "parallel.hpp"

namespace i2f {

// One axis' taps: output k reads inputs index0[k] and index1[k] with weights weight0[k], weight1[k].
struct BilinearTaps {
    std::int64_t size;  // outputs along the axis
    const std::int64_t* index0;
    const std::int64_t* index1;
    const float* weight0;
    const float* weight1;
};

struct BilinearShapes {
    std::int64_t input[2];  // [h, w]
    BilinearTaps rows;      // indices into 0 .. h - 1
    BilinearTaps cols;      // indices into 0 .. w - 1
};

// Empty when the sizes fit and every index lies in the input; else a one-line reason.
std::string check_bilinear_upsample(const BilinearShapes& shapes);

// output [rows.size, cols.size]: out[i][j] = t[r0[i]][j] * wr0[i] + t[r1[i]][j] * wr1[i] with
// t[r][j] = x[r][c0[j]] * wc0[j] + x[r][c1[j]] * wc1[j], every operation rounded to float32.
// The shapes must have passed check_bilinear_upsample; the output rows are split into `parts`
// consecutive bands (one per thread; a band computes each horizontal row it reads once).
void bilinear_upsample(const BilinearShapes& shapes, const float* input, float* output, std::int64_t parts,
                       const ParallelFor& parallel_for);

// The same, written as output > 0 (1 or 0 per byte, NumPy's bool) without the float image.
void bilinear_upsample_mask(const BilinearShapes& shapes, const float* input, std::uint8_t* mask, std::int64_t parts,
                            const ParallelFor& parallel_for);

}  // namespace i2f
