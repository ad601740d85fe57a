#include "token_routing.hpp"

#include <algorithm>
#include <vector>

namespace i2f {

namespace {

constexpr std::int64_t kMaxSide = std::int64_t{1} << 16;
constexpr std::uint8_t kPossiblyBackground = 1;  // i2f_deploy.prompt_map
constexpr std::uint8_t kUnknown = 2;
constexpr std::uint8_t kLargestLabel = 4;

// Per pixel row and token column: the maxima of the cell's pixels, of its first `reach` and of
// its last `reach` (what the neighbouring cells' windows see); and what the box needs.
struct CellMaxima {
    std::int64_t height, width, stride, reach, rows, cols;
    std::vector<std::uint8_t> own, head, tail;  // [height][cols]
    std::vector<std::uint8_t> row_prompted;     // [height]: a pixel of the row is not "possibly background"
    std::vector<std::uint8_t> col_prompted;     // [rows][width]: likewise per column, within one token row
    std::vector<std::uint8_t> unknown;          // [rows][cols]: the cell holds an "unknown" pixel
};

void scan_token_row(CellMaxima& m, const std::uint8_t* label, std::int64_t row) {
    const std::int64_t s = m.stride, reach = m.reach;
    std::uint8_t* col_prompted = m.col_prompted.data() + row * m.width;
    std::uint8_t* unknown = m.unknown.data() + row * m.cols;
    for (std::int64_t y = row * s; y < (row + 1) * s; ++y) {
        const std::uint8_t* line = label + y * m.width;
        std::uint8_t prompted = 0;
        for (std::int64_t c = 0; c < m.cols; ++c) {
            const std::uint8_t* cell = line + c * s;
            std::uint8_t own = 0, head = 0, tail = 0, any_unknown = 0, any_prompted = 0;
            for (std::int64_t i = 0; i < s; ++i) {
                own = std::max(own, cell[i]);
                any_unknown |= static_cast<std::uint8_t>(cell[i] == kUnknown);
                const std::uint8_t is_prompted = static_cast<std::uint8_t>(cell[i] != kPossiblyBackground);
                col_prompted[c * s + i] |= is_prompted;
                any_prompted |= is_prompted;
            }
            for (std::int64_t i = 0; i < reach; ++i) {
                head = std::max(head, cell[i]);
                tail = std::max(tail, cell[s - 1 - i]);
            }
            prompted |= any_prompted;
            const std::int64_t at = y * m.cols + c;
            m.own[at] = own;
            m.head[at] = head;
            m.tail[at] = tail;
            unknown[c] |= any_unknown;
        }
        m.row_prompted[y] = prompted;
    }
}

// [left, top, right, bottom] of the prompted pixels, snapped outward to the stride, grown by one
// stride and clamped; the whole map when every pixel is "possibly background".
void dpe_box(const CellMaxima& m, std::int64_t* box) {
    std::int64_t top = m.height, bottom = 0, left = m.width, right = 0;
    for (std::int64_t y = 0; y < m.height; ++y) {
        if (m.row_prompted[y]) {
            top = std::min(top, y);
            bottom = y + 1;
        }
    }
    for (std::int64_t x = 0; x < m.width; ++x) {
        std::uint8_t any = 0;
        for (std::int64_t row = 0; row < m.rows && !any; ++row) any = m.col_prompted[row * m.width + x];
        if (any) {
            left = std::min(left, x);
            right = x + 1;
        }
    }
    if (bottom == 0) {
        box[0] = 0, box[1] = 0, box[2] = m.width, box[3] = m.height;
        return;
    }
    const std::int64_t s = m.stride;
    auto low = [s](std::int64_t value) { return std::max<std::int64_t>(value / s * s - s, 0); };
    auto high = [s](std::int64_t value, std::int64_t size) { return std::min((value + s - 1) / s * s + s, size); };
    box[0] = low(left), box[1] = low(top), box[2] = high(right, m.width), box[3] = high(bottom, m.height);
}

}  // namespace

std::string check_token_routing(const TokenRoutingShapes& s) {
    const std::string op = "TokenRouting: ";
    const std::int64_t* d = s.ref_label;
    const std::string shape =
        "[" + std::to_string(d[0]) + ", " + std::to_string(d[1]) + ", " + std::to_string(d[2]) + ", " + std::to_string(d[3]) + "]";
    if (s.stride < 1 || s.stride > kMaxSide) return op + "stride must be 1.." + std::to_string(kMaxSide) + ", got " + std::to_string(s.stride);
    if (s.kernel_size < 1 || s.kernel_size / 2 > s.stride)
        return op + "kernel_size must be at least 1 and reach (kernel_size // 2) at most the stride " + std::to_string(s.stride) +
               ", got " + std::to_string(s.kernel_size);
    if (d[0] != 1 || d[1] != 1) return op + "ref_label " + shape + " must be [1, 1, H, W]";
    if (d[2] < s.stride || d[3] < s.stride || d[2] > kMaxSide || d[3] > kMaxSide || d[2] % s.stride != 0 || d[3] % s.stride != 0)
        return op + "ref_label " + shape + ": H and W must be positive multiples of the stride " + std::to_string(s.stride) +
               " up to " + std::to_string(kMaxSide);
    return "";
}

std::int64_t routing_tokens(const TokenRoutingShapes& s) {
    return (s.ref_label[2] / s.stride) * (s.ref_label[3] / s.stride);
}

std::string check_token_routing_labels(const TokenRoutingShapes& s, const std::uint8_t* ref_label) {
    const std::int64_t size = s.ref_label[2] * s.ref_label[3];
    const std::uint8_t largest = size > 0 ? *std::max_element(ref_label, ref_label + size) : 0;
    if (largest > kLargestLabel)
        return "TokenRouting: ref_label holds " + std::to_string(largest) + ", prompt-map values are 0.." + std::to_string(kLargestLabel);
    return "";
}

std::int64_t token_routing(const TokenRoutingShapes& shapes, const std::uint8_t* ref_label, std::int64_t* token_order,
                           std::int64_t* box, const ParallelFor& parallel_for) {
    CellMaxima m;
    m.height = shapes.ref_label[2], m.width = shapes.ref_label[3], m.stride = shapes.stride;
    m.reach = shapes.kernel_size / 2, m.rows = m.height / m.stride, m.cols = m.width / m.stride;
    const std::size_t per_pixel_row = static_cast<std::size_t>(m.height * m.cols);
    m.own.resize(per_pixel_row), m.head.resize(per_pixel_row), m.tail.resize(per_pixel_row);
    m.row_prompted.resize(static_cast<std::size_t>(m.height));
    m.col_prompted.assign(static_cast<std::size_t>(m.rows * m.width), 0);
    m.unknown.assign(static_cast<std::size_t>(m.rows * m.cols), 0);
    parallel_for(m.rows, [&](std::int64_t row) { scan_token_row(m, ref_label, row); });
    dpe_box(m, box);

    const std::int64_t s = m.stride, reach = m.reach;
    std::vector<std::uint8_t> rows_inside(static_cast<std::size_t>(m.rows)), cols_inside(static_cast<std::size_t>(m.cols));
    for (std::int64_t r = 0; r < m.rows; ++r) rows_inside[r] = r * s >= box[1] && r * s < box[3];
    for (std::int64_t c = 0; c < m.cols; ++c) cols_inside[c] = c * s >= box[0] && c * s < box[2];
    std::vector<std::uint8_t> routed(static_cast<std::size_t>(m.rows * m.cols));
    parallel_for(m.rows, [&](std::int64_t r) {
        std::vector<std::uint8_t> near(static_cast<std::size_t>(m.cols), 0);
        // the cell's pixel rows and `reach` rows of each neighbour, each counted when its own token
        // row lies in the box; along x likewise, per pixel row
        const std::int64_t first = std::max<std::int64_t>(0, r * s - reach), last = std::min(m.height, (r + 1) * s + reach);
        for (std::int64_t y = first; y < last; ++y) {
            if (!rows_inside[y / s]) continue;
            const std::int64_t at = y * m.cols;
            for (std::int64_t c = 0; c < m.cols; ++c) {
                std::uint8_t value = cols_inside[c] ? m.own[at + c] : 0;
                if (c > 0 && cols_inside[c - 1]) value = std::max(value, m.tail[at + c - 1]);
                if (c + 1 < m.cols && cols_inside[c + 1]) value = std::max(value, m.head[at + c + 1]);
                near[c] = std::max(near[c], value);
            }
        }
        for (std::int64_t c = 0; c < m.cols; ++c)
            routed[r * m.cols + c] = (near[c] > 0 && rows_inside[r] && cols_inside[c]) || m.unknown[r * m.cols + c];
    });
    // routed tokens ascending, then the others ascending
    const std::int64_t tokens = m.rows * m.cols;
    std::int64_t count = 0;
    for (std::int64_t t = 0; t < tokens; ++t) count += routed[t];
    std::int64_t next_routed = 0, next_other = count;
    for (std::int64_t t = 0; t < tokens; ++t) token_order[routed[t] ? next_routed++ : next_other++] = t;
    return count;
}

}  // namespace i2f
