// OpenVINO's face of ai.inter2former::TokenRouting (which tokens take full attention, and the DPE box): shapes for the graph,
// evaluate() calls the kernel.
#pragma once

#include <openvino/op/op.hpp>

namespace i2f::openvino {

class TokenRouting : public ov::op::Op {
public:
    OPENVINO_OP("TokenRouting", "ai.inter2former");

    TokenRouting() = default;
    TokenRouting(const ov::OutputVector& inputs, std::int64_t stride, std::int64_t kernel_size);

    void validate_and_infer_types() override;
    std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& inputs) const override;
    bool visit_attributes(ov::AttributeVisitor& visitor) override;
    bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override;
    bool has_evaluate() const override;

private:
    std::int64_t m_stride = 0;
    std::int64_t m_kernel_size = 0;
};

}  // namespace i2f::openvino
