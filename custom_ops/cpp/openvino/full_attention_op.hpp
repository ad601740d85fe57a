// OpenVINO's face of ai.inter2former::FullAttention (the routed tokens' softmax attention with RoPE): shapes for the graph,
// evaluate() calls the kernel.
#pragma once

#include <openvino/op/op.hpp>

namespace i2f::openvino {

class FullAttention : public ov::op::Op {
public:
    OPENVINO_OP("FullAttention", "ai.inter2former");

    FullAttention() = default;
    FullAttention(const ov::OutputVector& inputs, float scale);

    void validate_and_infer_types() override;
    std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& inputs) const override;
    bool visit_attributes(ov::AttributeVisitor& visitor) override;
    bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override;
    bool has_evaluate() const override;

private:
    float m_scale = 0.0f;
};

}  // namespace i2f::openvino
