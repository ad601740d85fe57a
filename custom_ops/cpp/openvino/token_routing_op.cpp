#include "token_routing_op.hpp"

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "../kernels/token_routing.hpp"
#include "common.hpp"

namespace i2f::openvino {

TokenRouting::TokenRouting(const ov::OutputVector& inputs, std::int64_t stride, std::int64_t kernel_size)
    : Op(inputs), m_stride(stride), m_kernel_size(kernel_size) {
    constructor_validate_and_infer_types();
}

void TokenRouting::validate_and_infer_types() {
    NODE_VALIDATION_CHECK(this, get_input_size() == 1, "TokenRouting takes 1 input, got ", get_input_size());
    NODE_VALIDATION_CHECK(this, get_input_element_type(0).compatible(ov::element::u8), "TokenRouting: ref_label must be uint8, got ",
                          get_input_element_type(0));
    const auto& shape = get_input_partial_shape(0);
    NODE_VALIDATION_CHECK(this, shape.rank().compatible(4), "TokenRouting: ref_label has rank ", shape.rank(), ", expected 4");
    ov::Dimension tokens = ov::Dimension::dynamic();
    if (shape.is_static()) {
        i2f::TokenRoutingShapes shapes{};
        for (std::size_t axis = 0; axis < 4; ++axis) shapes.ref_label[axis] = shape[axis].get_length();
        shapes.stride = m_stride;
        shapes.kernel_size = m_kernel_size;
        const std::string problem = i2f::check_token_routing(shapes);
        NODE_VALIDATION_CHECK(this, problem.empty(), problem);
        tokens = ov::Dimension(i2f::routing_tokens(shapes));
    }
    set_output_type(0, ov::element::i64, ov::PartialShape{tokens});
    set_output_type(1, ov::element::i64, ov::PartialShape{});
    set_output_type(2, ov::element::i64, ov::PartialShape{4});
}

std::shared_ptr<ov::Node> TokenRouting::clone_with_new_inputs(const ov::OutputVector& inputs) const {
    OPENVINO_ASSERT(inputs.size() == 1, "TokenRouting takes 1 input, got ", inputs.size());
    return std::make_shared<TokenRouting>(inputs, m_stride, m_kernel_size);
}

bool TokenRouting::visit_attributes(ov::AttributeVisitor& visitor) {
    visitor.on_attribute("stride", m_stride);
    visitor.on_attribute("kernel_size", m_kernel_size);
    return true;
}

bool TokenRouting::evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const {
    i2f::TokenRoutingShapes shapes{};
    shapes.stride = m_stride;
    shapes.kernel_size = m_kernel_size;
    const bool fits = read_shape(inputs[0], 4, shapes.ref_label) && i2f::check_token_routing(shapes).empty();
    const std::int64_t tokens = fits ? i2f::routing_tokens(shapes) : 0;
    std::vector<std::int64_t> order(static_cast<std::size_t>(tokens));
    std::int64_t count = 0, box[4] = {0, 0, 0, 0};
    if (fits) {
        // labels beyond 0..4 are taken as the function body takes them (the runtime refuses
        // such prompt maps before the graph; the C entry refuses them too)
        count = i2f::token_routing(shapes, inputs[0].data<const std::uint8_t>(), order.data(), box, parallel);
    }
    // a map the shapes refuse (a dynamic model fed a wrong size; a static one is refused when
    // compiled) routes nothing, over an empty box: OpenVINO's CPU plugin drops evaluate()'s errors
    outputs[0].set_shape(ov::Shape{static_cast<std::size_t>(tokens)});
    outputs[1].set_shape(ov::Shape{});
    outputs[2].set_shape(ov::Shape{4});
    write_int64(outputs[0], order.data(), order.size());
    write_int64(outputs[1], &count, 1);
    write_int64(outputs[2], box, 4);
    return true;
}

bool TokenRouting::has_evaluate() const {
    return true;
}

}  // namespace i2f::openvino
