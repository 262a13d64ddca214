// Picks the elementwise kernel variant once: AVX2+FMA when the CPU has both, else the baseline build.
#include "kernels.h"

namespace inflora {

const KernelTable& kernelTable() {
  static const KernelTable table = [] {
#if defined(__x86_64__) && defined(INFLORA_HAVE_AVX2_VARIANT)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return avx2Kernels();
#endif
    return baselineKernels();
  }();
  return table;
}

}  // namespace inflora
