// How a kernel is handed its threads: the caller's runtime decides (OpenVINO's parallel_for, or the
// C entries' pool of the caller's thread count, thread_pool.hpp); no kernel starts threads of its own.
#pragma once

#include <cstdint>
#include <functional>

namespace i2f {

// Runs body(0) .. body(count - 1), in any order, possibly concurrently.
using ParallelFor = std::function<void(std::int64_t count, const std::function<void(std::int64_t)>& body)>;

void serial_for(std::int64_t count, const std::function<void(std::int64_t)>& body);

}  // namespace i2f
