// OpenVINO's face of ai.inter2former::HybridMoE (the shared and routed SwiGLU experts): shapes for the graph,
// evaluate() calls the kernel.
#pragma once

#include <openvino/op/op.hpp>

namespace i2f::openvino {

class HybridMoE : public ov::op::Op {
public:
    OPENVINO_OP("HybridMoE", "ai.inter2former");

    HybridMoE() = default;
    HybridMoE(const ov::OutputVector& inputs, std::int64_t num_experts, float epsilon);

    void validate_and_infer_types() override;
    std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& inputs) const override;
    bool visit_attributes(ov::AttributeVisitor& visitor) override;
    bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override;
    bool has_evaluate() const override;

private:
    std::int64_t m_num_experts = 0;
    float m_epsilon = 0.0f;
};

}  // namespace i2f::openvino
