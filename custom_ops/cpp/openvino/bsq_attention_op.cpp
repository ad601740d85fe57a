#include "bsq_attention_op.hpp"

#include <string>

#include "../kernels/bsq_attention.hpp"
#include "common.hpp"

namespace i2f::openvino {

namespace {

const char* const kInputs[] = {"query", "key", "value", "code_weight", "code_bias", "code_keys"};

}  // namespace

BSQAttention::BSQAttention(const ov::OutputVector& inputs, float scale, std::int64_t code_size)
    : Op(inputs), m_scale(scale), m_code_size(code_size) {
    constructor_validate_and_infer_types();
}

void BSQAttention::validate_and_infer_types() {
    NODE_VALIDATION_CHECK(this, get_input_size() == 6, "BSQAttention takes 6 inputs, got ", get_input_size());
    for (std::size_t index = 0; index < 6; ++index) {
        NODE_VALIDATION_CHECK(this, get_input_element_type(index).compatible(ov::element::f32), "BSQAttention: ", kInputs[index],
                              " must be f32, got ", get_input_element_type(index));
        const auto rank = get_input_partial_shape(index).rank();
        NODE_VALIDATION_CHECK(this, rank.compatible(index == 4 ? 1 : 2), "BSQAttention: ", kInputs[index], " has rank ", rank);
    }
    NODE_VALIDATION_CHECK(this, m_code_size >= 1 && m_code_size <= 16, "BSQAttention: code_size must be 1..16, got ", m_code_size);
    set_output_type(0, ov::element::f32, attention_output_shape(get_input_partial_shape(0), get_input_partial_shape(2)));
}

std::shared_ptr<ov::Node> BSQAttention::clone_with_new_inputs(const ov::OutputVector& inputs) const {
    OPENVINO_ASSERT(inputs.size() == 6, "BSQAttention takes 6 inputs, got ", inputs.size());
    return std::make_shared<BSQAttention>(inputs, m_scale, m_code_size);
}

bool BSQAttention::visit_attributes(ov::AttributeVisitor& visitor) {
    visitor.on_attribute("scale", m_scale);
    visitor.on_attribute("code_size", m_code_size);
    return true;
}

bool BSQAttention::evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const {
    i2f::BsqAttentionShapes shapes{};
    std::int64_t* matrices[] = {shapes.query, shapes.key, shapes.value, shapes.code_weight, nullptr, shapes.code_keys};
    const bool ranks = read_matrix_shapes(inputs, matrices, 6, 4, shapes.code_bias);  // code_bias: a vector
    shapes.code_size = m_code_size;
    shapes.scale = m_scale;
    const std::string problem = ranks ? i2f::check_bsq_attention(shapes) : "BSQAttention: an input has the wrong rank";
    const ov::Shape& query = inputs[0].get_shape();
    outputs[0].set_shape(ov::Shape{query.empty() ? 0 : query[0], inputs[2].get_shape().size() == 2 ? inputs[2].get_shape()[1] : 0});
    if (!problem.empty()) {
        refuse(outputs[0]);
        return true;
    }
    i2f::bsq_attention(shapes, inputs[0].data<const float>(), inputs[1].data<const float>(), inputs[2].data<const float>(),
                       inputs[3].data<const float>(), inputs[4].data<const float>(), inputs[5].data<const float>(),
                       outputs[0].data<float>(), parallel);
    return true;
}

bool BSQAttention::has_evaluate() const {
    return true;
}

}  // namespace i2f::openvino
