// A C entry point per kernel, so tests (ctypes) call the arithmetic without a runtime.
#include <cstdint>
#include <cstring>
#include <string>

#include "dlu_upsample.hpp"

namespace {

int fail(const std::string& message, char* error, std::int64_t error_size) {
    if (error != nullptr && error_size > 0) {
        const std::size_t length = std::min<std::size_t>(message.size(), static_cast<std::size_t>(error_size - 1));
        std::memcpy(error, message.data(), length);
        error[length] = '\0';
    }
    return 1;
}

}  // namespace

extern "C" {

// Returns 0 and fills y, or 1 and a one-line reason in error (y untouched). Single-threaded.
__attribute__((visibility("default"))) int i2f_dlu_upsample(
    const std::int64_t* mixed_shape, const float* mixed, const std::int64_t* edge_map_shape, const float* edge_map,
    const std::int64_t* edge_term_shape, const float* edge_term, const std::int64_t* edge_weight_shape,
    const float* edge_weight, const std::int64_t* box, std::int64_t box_size, std::int64_t channels, float* y,
    std::int64_t y_size, char* error, std::int64_t error_size) {
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
    i2f::dlu_upsample(shapes, mixed, edge_map, edge_term, edge_weight, box, y, i2f::serial_for);
    return 0;
}

}  // extern "C"
