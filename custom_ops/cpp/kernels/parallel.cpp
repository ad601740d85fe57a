#include "parallel.hpp"

namespace i2f {

void serial_for(std::int64_t count, const std::function<void(std::int64_t)>& body) {
    for (std::int64_t index = 0; index < count; ++index) body(index);
}

}  // namespace i2f
