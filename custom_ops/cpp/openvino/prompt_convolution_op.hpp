// OpenVINO's face of ai.inter2former::PromptConvolution (DPE's convolution stack on the prompt map's box): shapes for the graph,
// evaluate() calls the kernel (which repacks the weights per call, as its C entry does).
#pragma once

#include <openvino/op/op.hpp>

namespace i2f::openvino {

class PromptConvolution : public ov::op::Op {
public:
    OPENVINO_OP("PromptConvolution", "ai.inter2former");

    PromptConvolution() = default;
    explicit PromptConvolution(const ov::OutputVector& inputs);

    void validate_and_infer_types() override;
    std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& inputs) const override;
    bool visit_attributes(ov::AttributeVisitor& visitor) override;
    bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override;
    bool has_evaluate() const override;
};

}  // namespace i2f::openvino
