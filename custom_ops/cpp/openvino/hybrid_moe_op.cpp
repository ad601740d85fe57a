#include "hybrid_moe_op.hpp"

#include <openvino/op/constant.hpp>
#include <string>
#include <vector>

#include "common.hpp"

namespace i2f::openvino {

namespace {

constexpr std::size_t kInputs = 2 + i2f::kHybridMoeWeights;

}  // namespace

HybridMoE::HybridMoE(const ov::OutputVector& inputs, std::int64_t num_experts, float epsilon)
    : Op(inputs), m_num_experts(num_experts), m_epsilon(epsilon) {
    constructor_validate_and_infer_types();
}

void HybridMoE::validate_and_infer_types() {
    NODE_VALIDATION_CHECK(this, get_input_size() == kInputs, "HybridMoE takes ", kInputs, " inputs, got ", get_input_size());
    for (std::size_t index = 0; index < kInputs; ++index) {
        const auto type = get_input_element_type(index);
        const bool fits = index == 1 ? integer_type(type) : type.compatible(ov::element::f32);
        NODE_VALIDATION_CHECK(this, fits, "HybridMoE: input ", index, " must be ", index == 1 ? "int64" : "f32", ", got ", type);
    }
    NODE_VALIDATION_CHECK(this, get_input_partial_shape(0).rank().compatible(2), "HybridMoE: x has rank ", get_input_partial_shape(0).rank());
    NODE_VALIDATION_CHECK(this, get_input_partial_shape(1).rank().compatible(1), "HybridMoE: routed has rank ", get_input_partial_shape(1).rank());
    NODE_VALIDATION_CHECK(this, m_num_experts >= 1, "HybridMoE: num_experts must be at least 1, got ", m_num_experts);
    set_output_type(0, ov::element::f32, get_input_partial_shape(0));
}

std::shared_ptr<ov::Node> HybridMoE::clone_with_new_inputs(const ov::OutputVector& inputs) const {
    OPENVINO_ASSERT(inputs.size() == kInputs, "HybridMoE takes ", kInputs, " inputs, got ", inputs.size());
    return std::make_shared<HybridMoE>(inputs, m_num_experts, m_epsilon);
}

bool HybridMoE::visit_attributes(ov::AttributeVisitor& visitor) {
    visitor.on_attribute("num_experts", m_num_experts);
    visitor.on_attribute("epsilon", m_epsilon);
    return true;
}

bool HybridMoE::evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const {
    i2f::HybridMoeShapes shapes{};
    std::string problem;
    for (std::size_t index = 0; index < kInputs && problem.empty(); ++index) {
        const ov::Shape& shape = inputs[index].get_shape();
        if (shape.size() > 3) {
            problem = "HybridMoE: input " + std::to_string(index) + " has rank " + std::to_string(shape.size());
            break;
        }
        i2f::TensorDims& dims = index == 0 ? shapes.x : index == 1 ? shapes.routed : shapes.weights[index - 2];
        dims.rank = static_cast<std::int64_t>(shape.size());
        for (std::size_t axis = 0; axis < shape.size(); ++axis) dims.size[axis] = static_cast<std::int64_t>(shape[axis]);
    }
    shapes.num_experts = m_num_experts;
    shapes.epsilon = m_epsilon;
    const std::vector<std::int64_t> routed = int64_values(inputs[1]);
    if (problem.empty()) problem = i2f::check_hybrid_moe(shapes, routed.data());
    outputs[0].set_shape(inputs[0].get_shape());
    if (!problem.empty()) {
        refuse(outputs[0]);
        return true;
    }
    i2f::hybrid_moe(*packed_weights(shapes, inputs), shapes.x.size[0], inputs[0].data<const float>(), shapes.routed.size[0],
                    routed.data(), outputs[0].data<float>(), parallel);
    return true;
}

std::shared_ptr<const i2f::HybridMoePacked> HybridMoE::packed_weights(const i2f::HybridMoeShapes& shapes,
                                                                      const ov::TensorVector& inputs) const {
    const float* weights[i2f::kHybridMoeWeights];
    std::vector<const void*> buffers(i2f::kHybridMoeWeights);
    bool constant = true;
    for (int index = 0; index < i2f::kHybridMoeWeights; ++index) {
        weights[index] = inputs[index + 2].data<const float>();
        buffers[index] = weights[index];
        constant = constant && ov::is_type<ov::op::v0::Constant>(get_input_node_ptr(index + 2));
    }
    if (!constant) return i2f::pack_hybrid_moe(shapes, weights, parallel);
    const std::lock_guard<std::mutex> lock(m_packed_mutex);
    if (!m_packed || m_packed_from != buffers) {
        m_packed = i2f::pack_hybrid_moe(shapes, weights, parallel);
        m_packed_from = std::move(buffers);
    }
    return m_packed;
}

bool HybridMoE::has_evaluate() const {
    return true;
}

}  // namespace i2f::openvino
