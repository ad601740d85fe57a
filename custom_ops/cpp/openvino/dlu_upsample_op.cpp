#include "dlu_upsample_op.hpp"

#include <algorithm>
#include <string>

#include "../kernels/dlu_upsample.hpp"
#include "common.hpp"

namespace i2f::openvino {

namespace {

constexpr std::int64_t kPad = 2;

ov::Dimension upsampled(const ov::Dimension& padded) {
    if (padded.is_dynamic()) return ov::Dimension::dynamic();
    return ov::Dimension(2 * (padded.get_length() - 2 * kPad));
}

}  // namespace

DLUUpsample::DLUUpsample(const ov::OutputVector& inputs, std::int64_t channels) : Op(inputs), m_channels(channels) {
    constructor_validate_and_infer_types();
}

void DLUUpsample::validate_and_infer_types() {
    NODE_VALIDATION_CHECK(this, get_input_size() == 5, "DLUUpsample takes 5 inputs, got ", get_input_size());
    NODE_VALIDATION_CHECK(this, m_channels >= 1, "DLUUpsample: channels must be at least 1, got ", m_channels);
    const char* names[] = {"mixed", "edge_map", "edge_term", "edge_weight", "box"};
    for (std::size_t index = 0; index < 5; ++index) {
        const auto type = get_input_element_type(index);
        // the box is int64 in the model; OpenVINO's CPU plugin may hand it over as int32
        const bool fits = index == 4 ? type.compatible(ov::element::i64) || type == ov::element::i32
                                     : type.compatible(ov::element::f32);
        NODE_VALIDATION_CHECK(this, fits, "DLUUpsample: ", names[index], " must be ", index == 4 ? "int64" : "f32",
                              ", got ", type);
        const auto rank = get_input_partial_shape(index).rank();
        NODE_VALIDATION_CHECK(this, rank.compatible(index == 4 ? 1 : 4), "DLUUpsample: ", names[index], " has rank ", rank);
    }
    const auto& mixed = get_input_partial_shape(0);
    ov::PartialShape output{1, m_channels, ov::Dimension::dynamic(), ov::Dimension::dynamic()};
    if (mixed.rank().is_static()) {
        NODE_VALIDATION_CHECK(this, mixed[1].compatible(9 * m_channels), "DLUUpsample: mixed has ", mixed[1],
                              " channels, expected 9 x channels = ", 9 * m_channels);
        output[2] = upsampled(mixed[2]);
        output[3] = upsampled(mixed[3]);
    }
    set_output_type(0, ov::element::f32, output);
}

std::shared_ptr<ov::Node> DLUUpsample::clone_with_new_inputs(const ov::OutputVector& inputs) const {
    OPENVINO_ASSERT(inputs.size() == 5, "DLUUpsample takes 5 inputs, got ", inputs.size());
    return std::make_shared<DLUUpsample>(inputs, m_channels);
}

bool DLUUpsample::visit_attributes(ov::AttributeVisitor& visitor) {
    visitor.on_attribute("channels", m_channels);
    return true;
}

bool DLUUpsample::evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const {
    i2f::DluUpsampleShapes shapes{};
    std::string problem;
    std::int64_t* const dims[] = {shapes.mixed, shapes.edge_map, shapes.edge_term, shapes.edge_weight};
    for (std::size_t index = 0; index < 4 && problem.empty(); ++index)
        if (!read_shape(inputs[index], 4, dims[index])) problem = "DLUUpsample: input " + std::to_string(index) + " must have rank 4";
    std::int64_t box[4] = {0, 0, 0, 0};
    if (problem.empty() && inputs[4].get_shape().size() != 1) problem = "DLUUpsample: box must have rank 1";
    if (problem.empty()) {
        shapes.box_size = static_cast<std::int64_t>(inputs[4].get_shape()[0]);
        shapes.channels = m_channels;
        for (std::int64_t side = 0; side < 4 && side < shapes.box_size; ++side)
            box[side] = inputs[4].get_element_type() == ov::element::i32 ? inputs[4].data<const std::int32_t>()[side]
                                                                          : inputs[4].data<const std::int64_t>()[side];
        problem = i2f::check_dlu_upsample(shapes, box);
    }
    const auto side = [](std::int64_t padded) { return static_cast<std::size_t>(std::max<std::int64_t>(0, 2 * (padded - 2 * kPad))); };
    outputs[0].set_shape(ov::Shape{1, static_cast<std::size_t>(m_channels), side(shapes.mixed[2]), side(shapes.mixed[3])});
    if (!problem.empty()) {
        refuse(outputs[0]);
        return true;
    }
    i2f::dlu_upsample(shapes, inputs[0].data<const float>(), inputs[1].data<const float>(), inputs[2].data<const float>(),
                      inputs[3].data<const float>(), box, outputs[0].data<float>(), parallel);
    return true;
}

bool DLUUpsample::has_evaluate() const {
    return true;
}

}  // namespace i2f::openvino
