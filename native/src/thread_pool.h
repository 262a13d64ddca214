// Splits the addon's non-GEMM kernels over as many threads as OpenBLAS uses (openblas_get_num_threads, so
// setThreads sizes both). The tfjs step runs one kernel at a time, so these threads run only while
// OpenBLAS's are idle: one set of cores, taken in turns, not two pools competing for them.
#pragma once

#include <cstdint>
#include <functional>

namespace inflora {

// Runs body(begin, end) over [0, n) cut into at most one contiguous range per thread, each a multiple of
// `align` long (but the last), on the calling thread alone when n·costPerItem is below what waking a
// helper thread is worth, or when another caller holds the pool (worker_threads loading the addon too).
// Every index is visited exactly once, by one thread; the bodies must write disjoint outputs.
// `threads` (0: poolThreads()) caps the split for a caller that has just set OpenBLAS to one thread.
void parallelFor(int64_t n, int64_t costPerItem, int64_t align, const std::function<void(int64_t, int64_t)>& body,
                 int threads = 0);

// The threads parallelFor uses now (1 = the calling thread only).
int poolThreads();

}  // namespace inflora
