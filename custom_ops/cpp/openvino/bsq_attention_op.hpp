// OpenVINO's face of ai.inter2former::BSQAttention (attention of the non-routed tokens over the key codes): shapes for the graph,
// evaluate() calls the kernel.
#pragma once

#include <openvino/op/op.hpp>

namespace i2f::openvino {

class BSQAttention : public ov::op::Op {
public:
    OPENVINO_OP("BSQAttention", "ai.inter2former");

    BSQAttention() = default;
    BSQAttention(const ov::OutputVector& inputs, float scale, std::int64_t code_size);

    void validate_and_infer_types() override;
    std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& inputs) const override;
    bool visit_attributes(ov::AttributeVisitor& visitor) override;
    bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override;
    bool has_evaluate() const override;

private:
    float m_scale = 0.0f;
    std::int64_t m_code_size = 0;
};

}  // namespace i2f::openvino
