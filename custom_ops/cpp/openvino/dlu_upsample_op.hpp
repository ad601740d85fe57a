// OpenVINO's face of ai.inter2former::DLUUpsample: shapes for the graph, evaluate() calls the kernel.
#pragma once

#include <openvino/op/op.hpp>

namespace i2f::openvino {

class DLUUpsample : public ov::op::Op {
public:
    OPENVINO_OP("DLUUpsample", "ai.inter2former");

    DLUUpsample() = default;
    DLUUpsample(const ov::OutputVector& inputs, std::int64_t channels);

    void validate_and_infer_types() override;
    std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& inputs) const override;
    bool visit_attributes(ov::AttributeVisitor& visitor) override;
    bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override;
    bool has_evaluate() const override;

private:
    std::int64_t m_channels = 0;
};

}  // namespace i2f::openvino
