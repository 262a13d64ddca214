// The helper threads of parallelFor: started on first use, then parked on a condition variable between
// kernels (no spinning: on a machine shared with other processes a spinning helper steals the core the
// caller needs). Never destroyed: at process exit they are parked and simply end with the process.
#include "thread_pool.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace inflora {
namespace {

// Work below this many "cost units" (≈ one float read or written) stays on the calling thread: waking a
// parked thread costs microseconds, a few tens of thousands of elements at memory speed.
constexpr int64_t kMinCostPerThread = 64 * 1024;

class Pool {
 public:
  // Runs body over `parts` ranges; part 0 on the caller. Returns false when the pool is busy.
  bool run(int parts, const std::function<void(int)>& body) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    ensureThreads(parts - 1);
    {
      std::lock_guard<std::mutex> lock(mu_);
      body_ = &body;
      parts_ = parts;
      pending_ = parts - 1;
      generation_++;
    }
    wake_.notify_all();
    body(0);
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return pending_ == 0; });
    body_ = nullptr;
    return true;
  }

 private:
  void ensureThreads(int n) {
    while (static_cast<int>(threads_.size()) < n) {
      const int index = static_cast<int>(threads_.size()) + 1;
      // The generation it has seen is fixed here, before run() publishes the next one.
      const uint64_t seen = generation_;
      threads_.emplace_back([this, index, seen] { loop(index, seen); });
      threads_.back().detach();
    }
  }

  void loop(int index, uint64_t seen) {
    for (;;) {
      const std::function<void(int)>* body;
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (index >= parts_) continue;
        body = body_;
      }
      (*body)(index);
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex busy_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> threads_;
  const std::function<void(int)>* body_ = nullptr;
  int parts_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
};

Pool& pool() {
  static Pool* p = new Pool();
  return *p;
}

}  // namespace

int poolThreads() { return std::max(1, openblas_get_num_threads()); }

void parallelFor(int64_t n, int64_t costPerItem, int64_t align, const std::function<void(int64_t, int64_t)>& body,
                 int threads) {
  if (n <= 0) return;
  const int64_t cost = n * std::max<int64_t>(costPerItem, 1);
  int64_t parts = std::min<int64_t>(threads > 0 ? threads : poolThreads(), cost / kMinCostPerThread);
  align = std::max<int64_t>(align, 1);
  parts = std::min(parts, (n + align - 1) / align);
  if (parts <= 1) return body(0, n);
  // Equal ranges rounded up to `align`: the last one takes what is left.
  const int64_t step = ((n + parts - 1) / parts + align - 1) / align * align;
  const auto part = [&](int i) {
    const int64_t begin = std::min(n, i * step);
    const int64_t end = std::min(n, begin + step);
    if (begin < end) body(begin, end);
  };
  if (!pool().run(static_cast<int>(parts), part)) body(0, n);
}

}  // namespace inflora
