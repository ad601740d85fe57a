// What the OpenVINO faces of the kernels share: the caller's threads, and int64 tensors that the
// CPU plugin may hand over (or expect back) as int32.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <functional>
#include <openvino/core/parallel.hpp>
#include <openvino/core/partial_shape.hpp>
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

// An attention's output: a row per query, a column per value channel ([query rows, value columns]).
inline ov::PartialShape attention_output_shape(const ov::PartialShape& query, const ov::PartialShape& value) {
    ov::PartialShape output{ov::Dimension::dynamic(), ov::Dimension::dynamic()};
    if (query.rank().is_static()) output[0] = query[0];
    if (value.rank().is_static()) output[1] = value[1];
    return output;
}

// Copies a tensor's shape into ``dims`` when it has ``rank`` axes; returns whether it has.
inline bool read_shape(const ov::Tensor& tensor, std::size_t rank, std::int64_t* dims) {
    const ov::Shape& shape = tensor.get_shape();
    if (shape.size() != rank) return false;
    for (std::size_t axis = 0; axis < rank; ++axis) dims[axis] = static_cast<std::int64_t>(shape[axis]);
    return true;
}

// The shapes of inputs that are [rows, columns] matrices, except the one at ``vector_index``, a
// vector whose length goes to ``vector_length``; a null entry of ``matrices`` is skipped.
// Returns whether every input has its rank.
inline bool read_matrix_shapes(const ov::TensorVector& inputs, std::int64_t* const* matrices, std::size_t count,
                               std::size_t vector_index, std::int64_t& vector_length) {
    bool ranks = true;
    for (std::size_t index = 0; index < count; ++index) {
        const ov::Shape& shape = inputs[index].get_shape();
        if (index == vector_index) {
            ranks = ranks && shape.size() == 1;
            vector_length = shape.size() == 1 ? static_cast<std::int64_t>(shape[0]) : 0;
        } else {
            ranks = read_shape(inputs[index], 2, matrices[index]) && ranks;
        }
    }
    return ranks;
}

// OpenVINO's CPU plugin drops what evaluate() throws and carries on with the output as it was:
// a malformed input is refused visibly instead, with NaN everywhere.
inline void refuse(ov::Tensor& output) {
    float* data = output.data<float>();
    std::fill(data, data + output.get_size(), std::numeric_limits<float>::quiet_NaN());
}

}  // namespace i2f::openvino
