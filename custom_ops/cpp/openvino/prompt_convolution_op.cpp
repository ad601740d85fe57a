#include "prompt_convolution_op.hpp"

#include <algorithm>
#include <new>
#include <string>

#include "../kernels/prompt_convolution.hpp"
#include "common.hpp"

namespace i2f::openvino {

namespace {

constexpr std::size_t kInputs = 2 + 2 * i2f::kPromptLayers;  // labels, table, then weight<l>, bias<l>

std::string input_name(std::size_t index) {
    if (index < 2) return index == 0 ? "labels" : "table";
    return (index % 2 == 0 ? "weight" : "bias") + std::to_string(index / 2);
}

std::size_t input_rank(std::size_t index) {
    return index < 2 ? 2 : index % 2 == 0 ? 4 : 1;
}

// Where input ``index``'s dims go in ``shapes`` (a bias: its length).
std::int64_t* dims_of(i2f::PromptConvolutionShapes& shapes, std::size_t index) {
    if (index < 2) return index == 0 ? shapes.labels : shapes.table;
    const std::size_t layer = index / 2 - 1;
    return index % 2 == 0 ? shapes.weight[layer] : &shapes.bias[layer];
}

// A side of the output grid: every layer halves it, rounding up.
std::int64_t grid_side(std::int64_t side) {
    for (int layer = 0; layer < i2f::kPromptLayers; ++layer) side = (side + 1) / 2;
    return side;
}

// The same of a dimension's bounds (the box's crop is dynamic in the decoder): a side of the labels
// has a pixel at least, so one of the grid a position at least (as the function body infers too).
ov::Dimension grid_side(const ov::Dimension& side) {
    const ov::Interval& bounds = side.get_interval();
    const std::int64_t upper = bounds.has_upper_bound() ? grid_side(bounds.get_max_val()) : ov::Interval::s_max;
    return ov::Dimension(std::min(upper, grid_side(std::max<std::int64_t>(1, bounds.get_min_val()))), upper);
}

}  // namespace

PromptConvolution::PromptConvolution(const ov::OutputVector& inputs) : Op(inputs) {
    constructor_validate_and_infer_types();
}

void PromptConvolution::validate_and_infer_types() {
    NODE_VALIDATION_CHECK(this, get_input_size() == kInputs, "PromptConvolution takes ", kInputs, " inputs, got ", get_input_size());
    i2f::PromptConvolutionShapes shapes{};
    shapes.labels[0] = shapes.labels[1] = 1;  // a dynamic side of the labels takes any length
    bool weights_known = true;
    for (std::size_t index = 0; index < kInputs; ++index) {
        const auto type = get_input_element_type(index);
        const bool fits = index == 0 ? type.compatible(ov::element::u8) : type.compatible(ov::element::f32);
        NODE_VALIDATION_CHECK(this, fits, "PromptConvolution: ", input_name(index), " must be ", index == 0 ? "uint8" : "f32", ", got ",
                              type);
        const auto& shape = get_input_partial_shape(index);
        NODE_VALIDATION_CHECK(this, shape.rank().compatible(input_rank(index)), "PromptConvolution: ", input_name(index), " has rank ",
                              shape.rank(), ", expected ", input_rank(index));
        if (shape.rank().is_dynamic()) {
            weights_known = weights_known && index == 0;
            continue;
        }
        for (std::size_t axis = 0; axis < input_rank(index); ++axis) {
            if (shape[axis].is_static()) dims_of(shapes, index)[axis] = shape[axis].get_length();
            else weights_known = weights_known && index == 0;
        }
    }
    if (weights_known) {  // the table and the weights must chain; static labels must have sides the kernel takes
        const std::string problem = i2f::check_prompt_convolution(shapes);
        NODE_VALIDATION_CHECK(this, problem.empty(), problem);
    }
    const auto& labels = get_input_partial_shape(0);
    const auto& last = get_input_partial_shape(kInputs - 2);
    ov::PartialShape output{1, ov::Dimension::dynamic(), ov::Dimension::dynamic(), ov::Dimension::dynamic()};
    if (last.rank().is_static()) output[1] = last[0];
    if (labels.rank().is_static()) {
        output[2] = grid_side(labels[0]);
        output[3] = grid_side(labels[1]);
    }
    set_output_type(0, ov::element::f32, output);
}

std::shared_ptr<ov::Node> PromptConvolution::clone_with_new_inputs(const ov::OutputVector& inputs) const {
    OPENVINO_ASSERT(inputs.size() == kInputs, "PromptConvolution takes ", kInputs, " inputs, got ", inputs.size());
    return std::make_shared<PromptConvolution>(inputs);
}

bool PromptConvolution::visit_attributes(ov::AttributeVisitor&) {
    return true;
}

bool PromptConvolution::evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const {
    i2f::PromptConvolutionShapes shapes{};
    bool ranks = true;
    for (std::size_t index = 0; index < kInputs; ++index)
        ranks = read_shape(inputs[index], input_rank(index), dims_of(shapes, index)) && ranks;
    std::string problem = ranks ? i2f::check_prompt_convolution(shapes) : "PromptConvolution: an input has the wrong rank";
    const std::uint8_t* labels = inputs[0].data<const std::uint8_t>();
    if (problem.empty()) problem = i2f::check_prompt_convolution_labels(shapes, labels);
    std::int64_t height = 0, width = 0;
    i2f::prompt_convolution_grid(shapes, &height, &width);
    const auto channels = static_cast<std::size_t>(shapes.weight[i2f::kPromptLayers - 1][0]);
    outputs[0].set_shape(ov::Shape{1, channels, static_cast<std::size_t>(height), static_cast<std::size_t>(width)});
    if (!problem.empty()) {
        refuse(outputs[0]);
        return true;
    }
    const float* weights[i2f::kPromptLayers];
    const float* biases[i2f::kPromptLayers];
    for (int layer = 0; layer < i2f::kPromptLayers; ++layer) {
        weights[layer] = inputs[2 + 2 * layer].data<const float>();
        biases[layer] = inputs[3 + 2 * layer].data<const float>();
    }
    try {  // its buffers grow with the positions to convolve; the output is written last
        i2f::prompt_convolution(shapes, labels, inputs[1].data<const float>(), weights, biases, outputs[0].data<float>(), parallel);
    } catch (const std::bad_alloc&) {
        refuse(outputs[0]);
    }
    return true;
}

bool PromptConvolution::has_evaluate() const {
    return true;
}

}  // namespace i2f::openvino
