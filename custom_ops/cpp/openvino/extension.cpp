// The library's entry point for ov::Core::add_extension: each native op for OpenVINO's graphs
// and IR, and its mapping from the ONNX node of the ai.inter2former domain.
#include <openvino/core/extension.hpp>
#include <openvino/core/op_extension.hpp>
#include <openvino/frontend/onnx/extension/op.hpp>

#include "bsq_attention_op.hpp"
#include "dlu_upsample_op.hpp"
#include "full_attention_op.hpp"
#include "hybrid_moe_op.hpp"
#include "prompt_convolution_op.hpp"
#include "token_routing_op.hpp"

OPENVINO_CREATE_EXTENSIONS(std::vector<ov::Extension::Ptr>({
    std::make_shared<ov::OpExtension<i2f::openvino::DLUUpsample>>(),
    std::make_shared<ov::frontend::onnx::OpExtension<i2f::openvino::DLUUpsample>>("DLUUpsample", "ai.inter2former"),
    std::make_shared<ov::OpExtension<i2f::openvino::TokenRouting>>(),
    std::make_shared<ov::frontend::onnx::OpExtension<i2f::openvino::TokenRouting>>("TokenRouting", "ai.inter2former"),
    std::make_shared<ov::OpExtension<i2f::openvino::BSQAttention>>(),
    std::make_shared<ov::frontend::onnx::OpExtension<i2f::openvino::BSQAttention>>("BSQAttention", "ai.inter2former"),
    std::make_shared<ov::OpExtension<i2f::openvino::FullAttention>>(),
    std::make_shared<ov::frontend::onnx::OpExtension<i2f::openvino::FullAttention>>("FullAttention", "ai.inter2former"),
    std::make_shared<ov::OpExtension<i2f::openvino::HybridMoE>>(),
    std::make_shared<ov::frontend::onnx::OpExtension<i2f::openvino::HybridMoE>>("HybridMoE", "ai.inter2former"),
    std::make_shared<ov::OpExtension<i2f::openvino::PromptConvolution>>(),
    std::make_shared<ov::frontend::onnx::OpExtension<i2f::openvino::PromptConvolution>>("PromptConvolution", "ai.inter2former"),
}));
