// A C entry point per kernel: tests (ctypes) call the arithmetic without a runtime, and ONNX Runtime's
// segmented decoder (runtime/ort_segments.py) calls it between its graph segments. Each takes the
// thread count: the calling thread and up to threads - 1 pooled workers (thread_pool.hpp).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>

#include "bilinear_upsample.hpp"
#include "bsq_attention.hpp"
#include "dlu_upsample.hpp"
#include "full_attention.hpp"
#include "hybrid_moe.hpp"
#include "prompt_convolution.hpp"
#include "thread_pool.hpp"
#include "token_routing.hpp"

namespace {

int fail(const std::string& message, char* error, std::int64_t error_size) {
    if (error != nullptr && error_size > 0) {
        const std::size_t length = std::min<std::size_t>(message.size(), static_cast<std::size_t>(error_size - 1));
        std::memcpy(error, message.data(), length);
        error[length] = '\0';
    }
    return 1;
}

constexpr std::int64_t kMaxThreads = 1024;

// The packed HybridMoE weight sets handed out and not yet freed: a handle is served only if listed.
std::mutex moe_handles_mutex;
std::map<const void*, std::shared_ptr<const i2f::HybridMoePacked>> moe_handles;

std::shared_ptr<const i2f::HybridMoePacked> moe_handle(const void* handle) {
    const std::lock_guard<std::mutex> lock(moe_handles_mutex);
    const auto found = moe_handles.find(handle);
    return found == moe_handles.end() ? nullptr : found->second;
}

// "" or why the thread count is refused.
std::string check_threads(const char* op, std::int64_t threads) {
    if (threads >= 1 && threads <= kMaxThreads) return "";
    return std::string(op) + ": threads must be from 1 to " + std::to_string(kMaxThreads) + ", got " + std::to_string(threads);
}

// "" with shapes filled, or why the bilinear upsampling's arguments are refused.
std::string bilinear_shapes(const std::int64_t* input_shape, const float* input, std::int64_t rows, const std::int64_t* row_index0,
                            const std::int64_t* row_index1, const float* row_weight0, const float* row_weight1, std::int64_t cols,
                            const std::int64_t* col_index0, const std::int64_t* col_index1, const float* col_weight0,
                            const float* col_weight1, const void* output, std::int64_t output_size, std::int64_t threads,
                            i2f::BilinearShapes& shapes) {
    if (std::string problem = check_threads("BilinearUpsample", threads); !problem.empty()) return problem;
    if (!input_shape || !input) return "BilinearUpsample: the input is missing";
    std::memcpy(shapes.input, input_shape, sizeof shapes.input);
    shapes.rows = {rows, row_index0, row_index1, row_weight0, row_weight1};
    shapes.cols = {cols, col_index0, col_index1, col_weight0, col_weight1};
    if (std::string problem = i2f::check_bilinear_upsample(shapes); !problem.empty()) return problem;
    if (!output || output_size != rows * cols)
        return "BilinearUpsample: the output holds " + std::to_string(output_size) + " values, expected " + std::to_string(rows * cols);
    return "";
}

}  // namespace

extern "C" {

// Returns 0 and fills y, or 1 and a one-line reason in error (y untouched). On `threads` threads.
__attribute__((visibility("default"))) int i2f_dlu_upsample(
    const std::int64_t* mixed_shape, const float* mixed, const std::int64_t* edge_map_shape, const float* edge_map,
    const std::int64_t* edge_term_shape, const float* edge_term, const std::int64_t* edge_weight_shape,
    const float* edge_weight, const std::int64_t* box, std::int64_t box_size, std::int64_t channels, float* y,
    std::int64_t y_size, std::int64_t threads, char* error, std::int64_t error_size) {
    if (const std::string problem = check_threads("DLUUpsample", threads); !problem.empty()) return fail(problem, error, error_size);
    if (!mixed_shape || !edge_map_shape || !edge_term_shape || !edge_weight_shape)
        return fail("DLUUpsample: a shape is missing", error, error_size);
    if (!mixed || !edge_map || !edge_term || !edge_weight) return fail("DLUUpsample: a tensor is missing", error, error_size);
    i2f::DluUpsampleShapes shapes{};
    std::memcpy(shapes.mixed, mixed_shape, sizeof shapes.mixed);
    std::memcpy(shapes.edge_map, edge_map_shape, sizeof shapes.edge_map);
    std::memcpy(shapes.edge_term, edge_term_shape, sizeof shapes.edge_term);
    std::memcpy(shapes.edge_weight, edge_weight_shape, sizeof shapes.edge_weight);
    shapes.box_size = box_size;
    shapes.channels = channels;
    const std::string problem = i2f::check_dlu_upsample(shapes, box);
    if (!problem.empty()) return fail(problem, error, error_size);
    if (!y) return fail("DLUUpsample: y is missing", error, error_size);
    const std::int64_t expected = channels * 2 * (mixed_shape[2] - 4) * 2 * (mixed_shape[3] - 4);
    if (y_size != expected)
        return fail("DLUUpsample: y holds " + std::to_string(y_size) + " values, expected " + std::to_string(expected), error, error_size);
    i2f::dlu_upsample(shapes, mixed, edge_map, edge_term, edge_weight, box, y, i2f::pooled_for(threads));
    return 0;
}

// Bilinear upsampling on given taps (bilinear_upsample.hpp): input [h, w] (input_shape [2]), per
// output row and column two indices and two weights. Returns 0 and fills output [rows, cols], or 1
// and a one-line reason (output untouched). On `threads` threads.
__attribute__((visibility("default"))) int i2f_bilinear_upsample(
    const std::int64_t* input_shape, const float* input, std::int64_t rows, const std::int64_t* row_index0, const std::int64_t* row_index1,
    const float* row_weight0, const float* row_weight1, std::int64_t cols, const std::int64_t* col_index0, const std::int64_t* col_index1,
    const float* col_weight0, const float* col_weight1, float* output, std::int64_t output_size, std::int64_t threads, char* error,
    std::int64_t error_size) {
    i2f::BilinearShapes shapes{};
    const std::string problem = bilinear_shapes(input_shape, input, rows, row_index0, row_index1, row_weight0, row_weight1, cols, col_index0,
                                                col_index1, col_weight0, col_weight1, output, output_size, threads, shapes);
    if (!problem.empty()) return fail(problem, error, error_size);
    i2f::bilinear_upsample(shapes, input, output, threads, i2f::pooled_for(threads));
    return 0;
}

// The same thresholded: mask [rows, cols] of 1 where the upsampled value is > 0, else 0.
__attribute__((visibility("default"))) int i2f_bilinear_upsample_mask(
    const std::int64_t* input_shape, const float* input, std::int64_t rows, const std::int64_t* row_index0, const std::int64_t* row_index1,
    const float* row_weight0, const float* row_weight1, std::int64_t cols, const std::int64_t* col_index0, const std::int64_t* col_index1,
    const float* col_weight0, const float* col_weight1, std::uint8_t* mask, std::int64_t mask_size, std::int64_t threads, char* error,
    std::int64_t error_size) {
    i2f::BilinearShapes shapes{};
    const std::string problem = bilinear_shapes(input_shape, input, rows, row_index0, row_index1, row_weight0, row_weight1, cols, col_index0,
                                                col_index1, col_weight0, col_weight1, mask, mask_size, threads, shapes);
    if (!problem.empty()) return fail(problem, error, error_size);
    i2f::bilinear_upsample_mask(shapes, input, mask, threads, i2f::pooled_for(threads));
    return 0;
}

// TokenRouting: shape [4] of ref_label; token_order holds token_order_size values, dpe_box 4.
// Returns 0 with num_routed set, or 1 and a one-line reason (outputs untouched). On `threads` threads.
__attribute__((visibility("default"))) int i2f_token_routing(
    const std::int64_t* ref_label_shape, const std::uint8_t* ref_label, std::int64_t stride, std::int64_t kernel_size,
    std::int64_t* token_order, std::int64_t token_order_size, std::int64_t* num_routed, std::int64_t* dpe_box, std::int64_t threads,
    char* error, std::int64_t error_size) {
    if (const std::string problem = check_threads("TokenRouting", threads); !problem.empty()) return fail(problem, error, error_size);
    if (!ref_label_shape || !ref_label) return fail("TokenRouting: ref_label is missing", error, error_size);
    i2f::TokenRoutingShapes shapes{};
    std::memcpy(shapes.ref_label, ref_label_shape, sizeof shapes.ref_label);
    shapes.stride = stride;
    shapes.kernel_size = kernel_size;
    std::string problem = i2f::check_token_routing(shapes);
    if (problem.empty()) problem = i2f::check_token_routing_labels(shapes, ref_label);
    if (!problem.empty()) return fail(problem, error, error_size);
    if (!token_order || !num_routed || !dpe_box) return fail("TokenRouting: an output is missing", error, error_size);
    if (token_order_size != i2f::routing_tokens(shapes))
        return fail("TokenRouting: token_order holds " + std::to_string(token_order_size) + " values, expected " +
                        std::to_string(i2f::routing_tokens(shapes)), error, error_size);
    *num_routed = i2f::token_routing(shapes, ref_label, token_order, dpe_box, i2f::pooled_for(threads));
    return 0;
}

// BSQAttention: shapes as in BsqAttentionShapes (pairs for the matrices, code_bias its length).
// Returns 0 and fills output [M, D], or 1 and a one-line reason. On `threads` threads.
__attribute__((visibility("default"))) int i2f_bsq_attention(
    const std::int64_t* query_shape, const float* query, const std::int64_t* key_shape, const float* key,
    const std::int64_t* value_shape, const float* value, const std::int64_t* code_weight_shape, const float* code_weight,
    std::int64_t code_bias_size, const float* code_bias, const std::int64_t* code_keys_shape, const float* code_keys,
    float scale, std::int64_t code_size, float* output, std::int64_t output_size, std::int64_t threads, char* error, std::int64_t error_size) {
    if (const std::string problem = check_threads("BSQAttention", threads); !problem.empty()) return fail(problem, error, error_size);
    if (!query_shape || !key_shape || !value_shape || !code_weight_shape || !code_keys_shape)
        return fail("BSQAttention: a shape is missing", error, error_size);
    if (!query || !key || !value || !code_weight || !code_bias || !code_keys) return fail("BSQAttention: a tensor is missing", error, error_size);
    i2f::BsqAttentionShapes shapes{};
    std::memcpy(shapes.query, query_shape, sizeof shapes.query);
    std::memcpy(shapes.key, key_shape, sizeof shapes.key);
    std::memcpy(shapes.value, value_shape, sizeof shapes.value);
    std::memcpy(shapes.code_weight, code_weight_shape, sizeof shapes.code_weight);
    std::memcpy(shapes.code_keys, code_keys_shape, sizeof shapes.code_keys);
    shapes.code_bias = code_bias_size;
    shapes.code_size = code_size;
    shapes.scale = scale;
    const std::string problem = i2f::check_bsq_attention(shapes);
    if (!problem.empty()) return fail(problem, error, error_size);
    const std::int64_t expected = shapes.query[0] * shapes.query[1];
    if (output_size != expected || (expected > 0 && !output))
        return fail("BSQAttention: output holds " + std::to_string(output_size) + " values, expected " + std::to_string(expected), error, error_size);
    i2f::bsq_attention(shapes, query, key, value, code_weight, code_bias, code_keys, output, i2f::pooled_for(threads));
    return 0;
}

// FullAttention: shapes as in FullAttentionShapes (pairs for the matrices, query_tokens its length).
// Returns 0 and fills output [M, D], or 1 and a one-line reason. On `threads` threads.
__attribute__((visibility("default"))) int i2f_full_attention(
    const std::int64_t* query_shape, const float* query, const std::int64_t* key_shape, const float* key,
    const std::int64_t* value_shape, const float* value, std::int64_t query_tokens_size, const std::int64_t* query_tokens,
    const std::int64_t* rope_cos_shape, const float* rope_cos, const std::int64_t* rope_sin_shape, const float* rope_sin, float scale,
    float* output, std::int64_t output_size, std::int64_t threads, char* error, std::int64_t error_size) {
    if (const std::string problem = check_threads("FullAttention", threads); !problem.empty()) return fail(problem, error, error_size);
    if (!query_shape || !key_shape || !value_shape || !rope_cos_shape || !rope_sin_shape)
        return fail("FullAttention: a shape is missing", error, error_size);
    if (!query || !key || !value || !query_tokens || !rope_cos || !rope_sin) return fail("FullAttention: a tensor is missing", error, error_size);
    i2f::FullAttentionShapes shapes{};
    std::memcpy(shapes.query, query_shape, sizeof shapes.query);
    std::memcpy(shapes.key, key_shape, sizeof shapes.key);
    std::memcpy(shapes.value, value_shape, sizeof shapes.value);
    std::memcpy(shapes.rope_cos, rope_cos_shape, sizeof shapes.rope_cos);
    std::memcpy(shapes.rope_sin, rope_sin_shape, sizeof shapes.rope_sin);
    shapes.query_tokens = query_tokens_size;
    shapes.scale = scale;
    std::string problem = i2f::check_full_attention(shapes);
    if (problem.empty()) problem = i2f::check_full_attention_tokens(shapes, query_tokens);
    if (!problem.empty()) return fail(problem, error, error_size);
    const std::int64_t expected = shapes.query[0] * shapes.query[1];
    if (output_size != expected || (expected > 0 && !output))
        return fail("FullAttention: output holds " + std::to_string(output_size) + " values, expected " + std::to_string(expected), error, error_size);
    i2f::full_attention(shapes, query, key, value, query_tokens, rope_cos, rope_sin, output, i2f::pooled_for(threads));
    return 0;
}

// PromptConvolution: labels [2], table [2], the four weights' shapes [4 x 4] and the biases'
// sizes [4], each layer's data by pointer. Returns 0 and fills output [1, C4, h, w], or 1 and a
// one-line reason (output untouched). On `threads` threads.
__attribute__((visibility("default"))) int i2f_prompt_convolution(
    const std::int64_t* labels_shape, const std::uint8_t* labels, const std::int64_t* table_shape, const float* table,
    const std::int64_t* weight_shapes, const float* const* weights, const std::int64_t* bias_sizes, const float* const* biases,
    float* output, std::int64_t output_size, std::int64_t threads, char* error, std::int64_t error_size) {
    if (const std::string problem = check_threads("PromptConvolution", threads); !problem.empty()) return fail(problem, error, error_size);
    if (!labels_shape || !table_shape || !weight_shapes || !bias_sizes) return fail("PromptConvolution: a shape is missing", error, error_size);
    if (!labels || !table || !weights || !biases) return fail("PromptConvolution: a tensor is missing", error, error_size);
    for (int l = 0; l < i2f::kPromptLayers; ++l)
        if (!weights[l] || !biases[l])
            return fail("PromptConvolution: weight" + std::to_string(l + 1) + " or bias" + std::to_string(l + 1) + " is missing", error, error_size);
    i2f::PromptConvolutionShapes shapes{};
    std::memcpy(shapes.labels, labels_shape, sizeof shapes.labels);
    std::memcpy(shapes.table, table_shape, sizeof shapes.table);
    std::memcpy(shapes.weight, weight_shapes, sizeof shapes.weight);
    std::memcpy(shapes.bias, bias_sizes, sizeof shapes.bias);
    std::string problem = i2f::check_prompt_convolution(shapes);
    if (problem.empty()) problem = i2f::check_prompt_convolution_labels(shapes, labels);
    if (!problem.empty()) return fail(problem, error, error_size);
    std::int64_t height = 0, width = 0;
    i2f::prompt_convolution_grid(shapes, &height, &width);
    const std::int64_t expected = shapes.weight[i2f::kPromptLayers - 1][0] * height * width;
    if (!output || output_size != expected)
        return fail("PromptConvolution: output holds " + std::to_string(output_size) + " values, expected " + std::to_string(expected), error, error_size);
    try {  // its buffers grow with the positions to convolve (all of them on a random map); output is written last
        i2f::prompt_convolution(shapes, labels, table, weights, biases, output, i2f::pooled_for(threads));
    } catch (const std::bad_alloc&) {
        return fail("PromptConvolution: out of memory for labels [" + std::to_string(shapes.labels[0]) + ", " + std::to_string(shapes.labels[1]) + "]",
                    error, error_size);
    }
    return 0;
}

// HybridMoE: ranks [23] and dims [23 x 3] of x, routed and the 21 weights (in WEIGHTS order),
// their data in that order. Returns 0 and fills y [N, C], or 1 and a one-line reason. On `threads` threads.
__attribute__((visibility("default"))) int i2f_hybrid_moe(
    const std::int64_t* ranks, const std::int64_t* dims, const void* const* data, std::int64_t num_experts, float epsilon,
    float* y, std::int64_t y_size, std::int64_t threads, char* error, std::int64_t error_size) {
    if (const std::string problem = check_threads("HybridMoE", threads); !problem.empty()) return fail(problem, error, error_size);
    if (!ranks || !dims || !data) return fail("HybridMoE: the inputs are missing", error, error_size);
    constexpr int inputs = 2 + i2f::kHybridMoeWeights;
    i2f::HybridMoeShapes shapes{};
    for (int index = 0; index < inputs; ++index) {
        if (ranks[index] < 0 || ranks[index] > 3)
            return fail("HybridMoE: input " + std::to_string(index) + " has rank " + std::to_string(ranks[index]) + ", at most 3 expected", error, error_size);
        if (!data[index]) return fail("HybridMoE: input " + std::to_string(index) + " is missing", error, error_size);
        i2f::TensorDims& target = index == 0 ? shapes.x : index == 1 ? shapes.routed : shapes.weights[index - 2];
        target.rank = ranks[index];
        std::copy(dims + 3 * index, dims + 3 * index + 3, target.size);
    }
    shapes.num_experts = num_experts;
    shapes.epsilon = epsilon;
    const auto* routed = static_cast<const std::int64_t*>(data[1]);
    const std::string problem = i2f::check_hybrid_moe(shapes, routed);
    if (!problem.empty()) return fail(problem, error, error_size);
    const std::int64_t expected = shapes.x.size[0] * shapes.x.size[1];
    if (!y || y_size != expected)
        return fail("HybridMoE: y holds " + std::to_string(y_size) + " values, expected " + std::to_string(expected), error, error_size);
    const float* weights[i2f::kHybridMoeWeights];
    for (int index = 0; index < i2f::kHybridMoeWeights; ++index) weights[index] = static_cast<const float*>(data[index + 2]);
    i2f::hybrid_moe(shapes, static_cast<const float*>(data[0]), routed, weights, y, i2f::pooled_for(threads));
    return 0;
}

// HybridMoE's 21 weights packed once: ranks [21], dims [21 x 3] and data in WEIGHTS order. Returns
// 0 and a handle in *handle (free it with i2f_hybrid_moe_free), or 1 and a one-line reason.
__attribute__((visibility("default"))) int i2f_hybrid_moe_pack(
    const std::int64_t* ranks, const std::int64_t* dims, const void* const* data, std::int64_t num_experts, float epsilon,
    void** handle, std::int64_t threads, char* error, std::int64_t error_size) {
    if (const std::string problem = check_threads("HybridMoE", threads); !problem.empty()) return fail(problem, error, error_size);
    if (!ranks || !dims || !data || !handle) return fail("HybridMoE: the weights or the handle are missing", error, error_size);
    i2f::HybridMoeShapes shapes{};
    for (int index = 0; index < i2f::kHybridMoeWeights; ++index) {
        if (ranks[index] < 0 || ranks[index] > 3)
            return fail("HybridMoE: weight " + std::to_string(index) + " has rank " + std::to_string(ranks[index]) + ", at most 3 expected", error, error_size);
        if (!data[index]) return fail("HybridMoE: weight " + std::to_string(index) + " is missing", error, error_size);
        shapes.weights[index].rank = ranks[index];
        std::copy(dims + 3 * index, dims + 3 * index + 3, shapes.weights[index].size);
    }
    shapes.num_experts = num_experts;
    shapes.epsilon = epsilon;
    if (const std::string problem = i2f::check_hybrid_moe_weights(shapes); !problem.empty()) return fail(problem, error, error_size);
    const float* weights[i2f::kHybridMoeWeights];
    for (int index = 0; index < i2f::kHybridMoeWeights; ++index) weights[index] = static_cast<const float*>(data[index]);
    std::shared_ptr<const i2f::HybridMoePacked> packed = i2f::pack_hybrid_moe(shapes, weights, i2f::pooled_for(threads));
    const std::lock_guard<std::mutex> lock(moe_handles_mutex);
    *handle = const_cast<i2f::HybridMoePacked*>(packed.get());
    moe_handles.emplace(packed.get(), std::move(packed));
    return 0;
}

// HybridMoE on weights packed by i2f_hybrid_moe_pack: x [x_dims[0], x_dims[1]], routed [routed_size].
// Returns 0 and fills y [N, C], or 1 and a one-line reason. On `threads` threads.
__attribute__((visibility("default"))) int i2f_hybrid_moe_packed(
    const void* handle, const std::int64_t* x_dims, const float* x, std::int64_t routed_size, const std::int64_t* routed, float* y,
    std::int64_t y_size, std::int64_t threads, char* error, std::int64_t error_size) {
    if (const std::string problem = check_threads("HybridMoE", threads); !problem.empty()) return fail(problem, error, error_size);
    const std::shared_ptr<const i2f::HybridMoePacked> packed = moe_handle(handle);
    if (!packed) return fail("HybridMoE: the packed weights' handle is unknown (freed, or never packed)", error, error_size);
    if (!x_dims || !x) return fail("HybridMoE: x is missing", error, error_size);
    const i2f::TensorDims x_shape{2, {x_dims[0], x_dims[1], 0}}, routed_shape{1, {routed_size, 0, 0}};
    if (const std::string problem = i2f::check_hybrid_moe_tokens(*packed, x_shape, routed_shape, routed); !problem.empty())
        return fail(problem, error, error_size);
    const std::int64_t expected = x_dims[0] * x_dims[1];
    if (!y || y_size != expected)
        return fail("HybridMoE: y holds " + std::to_string(y_size) + " values, expected " + std::to_string(expected), error, error_size);
    i2f::hybrid_moe(*packed, x_dims[0], x, routed_size, routed, y, i2f::pooled_for(threads));
    return 0;
}

// Frees a handle of i2f_hybrid_moe_pack; 1 and a one-line reason for an unknown one.
__attribute__((visibility("default"))) int i2f_hybrid_moe_free(void* handle, char* error, std::int64_t error_size) {
    const std::lock_guard<std::mutex> lock(moe_handles_mutex);
    if (moe_handles.erase(handle) == 0) return fail("HybridMoE: the packed weights' handle is unknown (freed, or never packed)", error, error_size);
    return 0;
}

}  // extern "C"
