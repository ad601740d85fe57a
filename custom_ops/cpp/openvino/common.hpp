// What the OpenVINO faces of the kernels share: the caller's threads, and int64 tensors that the
// CPU plugin may hand over (or expect back) as int32.
#pragma once

#include <cstdint>
#include <functional>
#include <openvino/core/parallel.hpp>
#include <openvino/runtime/tensor.hpp>
#include <vector>

namespace i2f::openvino {

// Runs in the calling inference's task arena: the plugin's INFERENCE_NUM_THREADS.
inline void parallel(std::int64_t count, const std::function<void(std::int64_t)>& body) {
    ov::parallel_for(count, [&](std::int64_t index) { body(index); });
}

// An integer tensor's values as int64 (a copy only when the plugin made it int32).
inline std::vector<std::int64_t> int64_values(const ov::Tensor& tensor) {
    const std::size_t size = tensor.get_size();
    if (tensor.get_element_type() == ov::element::i32) {
        const std::int32_t* data = tensor.data<const std::int32_t>();
        return std::vector<std::int64_t>(data, data + size);
    }
    const std::int64_t* data = tensor.data<const std::int64_t>();
    return std::vector<std::int64_t>(data, data + size);
}

// Writes int64 values into an output tensor of int64 or int32.
inline void write_int64(ov::Tensor& tensor, const std::int64_t* values, std::size_t size) {
    if (tensor.get_element_type() == ov::element::i32) {
        std::int32_t* data = tensor.data<std::int32_t>();
        for (std::size_t index = 0; index < size; ++index) data[index] = static_cast<std::int32_t>(values[index]);
    } else {
        std::int64_t* data = tensor.data<std::int64_t>();
        for (std::size_t index = 0; index < size; ++index) data[index] = values[index];
    }
}

inline bool integer_type(const ov::element::Type& type) {
    return type.compatible(ov::element::i64) || type == ov::element::i32;
}

}  // namespace i2f::openvino
