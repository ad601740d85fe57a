// OpenVINO's face of ai.inter2former::HybridMoE (the shared and routed SwiGLU experts): shapes for the graph,
// evaluate() calls the kernel. Weights that are the graph's constants are packed at the first
// evaluate and kept with the node (keyed by their buffers); other weights are packed per call.
#pragma once

#include <memory>
#include <mutex>
#include <openvino/op/op.hpp>
#include <vector>

#include "../kernels/hybrid_moe.hpp"

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
    // The packed weights when inputs 2..22 are Constant nodes and their buffers are those packed
    // before; else packed now (kept for the next call only when constant).
    std::shared_ptr<const i2f::HybridMoePacked> packed_weights(const i2f::HybridMoeShapes& shapes, const ov::TensorVector& inputs) const;

    std::int64_t m_num_experts = 0;
    float m_epsilon = 0.0f;
    mutable std::mutex m_packed_mutex;
    mutable std::shared_ptr<const i2f::HybridMoePacked> m_packed;
    mutable std::vector<const void*> m_packed_from;  // the weight buffers m_packed was made from
};

}  // namespace i2f::openvino
