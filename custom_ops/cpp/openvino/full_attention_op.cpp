#include "full_attention_op.hpp"

#include <string>

#include "../kernels/full_attention.hpp"
#include "common.hpp"

namespace i2f::openvino {

namespace {

constexpr std::size_t kInputs = 6;
constexpr std::size_t kTokens = 3;  // query_tokens: the integer input, rank 1
const char* const kNames[kInputs] = {"query", "key", "value", "query_tokens", "rope_cos", "rope_sin"};

}  // namespace

FullAttention::FullAttention(const ov::OutputVector& inputs, float scale) : Op(inputs), m_scale(scale) {
    constructor_validate_and_infer_types();
}

void FullAttention::validate_and_infer_types() {
    NODE_VALIDATION_CHECK(this, get_input_size() == kInputs, "FullAttention takes ", kInputs, " inputs, got ", get_input_size());
    for (std::size_t index = 0; index < kInputs; ++index) {
        const auto type = get_input_element_type(index);
        const bool fits = index == kTokens ? integer_type(type) : type.compatible(ov::element::f32);
        NODE_VALIDATION_CHECK(this, fits, "FullAttention: ", kNames[index], " must be ", index == kTokens ? "int64" : "f32", ", got ", type);
        const auto rank = get_input_partial_shape(index).rank();
        NODE_VALIDATION_CHECK(this, rank.compatible(index == kTokens ? 1 : 2), "FullAttention: ", kNames[index], " has rank ", rank);
    }
    set_output_type(0, ov::element::f32, attention_output_shape(get_input_partial_shape(0), get_input_partial_shape(2)));
}

std::shared_ptr<ov::Node> FullAttention::clone_with_new_inputs(const ov::OutputVector& inputs) const {
    OPENVINO_ASSERT(inputs.size() == kInputs, "FullAttention takes ", kInputs, " inputs, got ", inputs.size());
    return std::make_shared<FullAttention>(inputs, m_scale);
}

bool FullAttention::visit_attributes(ov::AttributeVisitor& visitor) {
    visitor.on_attribute("scale", m_scale);
    return true;
}

bool FullAttention::evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const {
    i2f::FullAttentionShapes shapes{};
    std::int64_t* matrices[kInputs] = {shapes.query, shapes.key, shapes.value, nullptr, shapes.rope_cos, shapes.rope_sin};
    const bool ranks = read_matrix_shapes(inputs, matrices, kInputs, kTokens, shapes.query_tokens);
    shapes.scale = m_scale;
    std::string problem = ranks ? i2f::check_full_attention(shapes) : "FullAttention: an input has the wrong rank";
    const std::vector<std::int64_t> tokens = int64_values(inputs[kTokens]);
    if (problem.empty()) problem = i2f::check_full_attention_tokens(shapes, tokens.data());
    const ov::Shape& query = inputs[0].get_shape();
    outputs[0].set_shape(ov::Shape{query.empty() ? 0 : query[0], inputs[2].get_shape().size() == 2 ? inputs[2].get_shape()[1] : 0});
    if (!problem.empty()) {
        refuse(outputs[0]);
        return true;
    }
    i2f::full_attention(shapes, inputs[0].data<const float>(), inputs[1].data<const float>(), inputs[2].data<const float>(),
                        tokens.data(), inputs[4].data<const float>(), inputs[5].data<const float>(), outputs[0].data<float>(), parallel);
    return true;
}

bool FullAttention::has_evaluate() const {
    return true;
}

}  // namespace i2f::openvino
