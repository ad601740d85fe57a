// The worker threads the C entries lend a kernel's ParallelFor: the calling thread plus at most
// threads - 1 workers, started on first need and kept (asleep, never spinning) for the next call,
// so a runtime that calls the kernels between its own graph runs keeps to its thread count.
#pragma once

#include <cstdint>

#include "parallel.hpp"

namespace i2f {

// A ParallelFor over the caller and threads - 1 pooled workers (threads >= 1; 1 runs serially).
// Calls from several threads at once take turns.
ParallelFor pooled_for(std::int64_t threads);

}  // namespace i2f
