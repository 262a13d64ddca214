// The elementwise kernel variants built into the addon (a registry: name, table, CPU requirement) and the
// choice among them, made once by CPUID: the fastest the CPU and the OS support, unless INFLORA_KERNELS
// names another supported one. The reason is kept for blasInfo() and the benchmark headers.
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>

#include "kernels.h"

namespace inflora {
namespace {

bool has(const char* feature) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the vector registers (XGETBV).
  if (std::strcmp(feature, "avx2") == 0) return __builtin_cpu_supports("avx2");
  if (std::strcmp(feature, "fma") == 0) return __builtin_cpu_supports("fma");
  if (std::strcmp(feature, "avx512f") == 0) return __builtin_cpu_supports("avx512f");
  if (std::strcmp(feature, "avx512bw") == 0) return __builtin_cpu_supports("avx512bw");
  if (std::strcmp(feature, "avx512dq") == 0) return __builtin_cpu_supports("avx512dq");
  if (std::strcmp(feature, "avx512vl") == 0) return __builtin_cpu_supports("avx512vl");
#endif
  (void)feature;
  return false;
}

// "" when the CPU has every feature, else the first one it lacks.
const char* firstMissing(std::initializer_list<const char*> features) {
  for (const char* f : features) {
    if (!has(f)) return f;
  }
  return "";
}

struct Registry {
  KernelVariant variants[3];
  int count = 0;
};

const Registry& registry() {
  static const Registry r = [] {
    Registry reg;
    reg.variants[reg.count++] = {"baseline", baselineKernels, true, ""};
#if defined(__x86_64__) && defined(INFLORA_HAVE_AVX2_VARIANT)
    {
      const char* m = firstMissing({"avx2", "fma"});
      reg.variants[reg.count++] = {"avx2", avx2Kernels, *m == 0, m};
    }
#endif
#if defined(__x86_64__) && defined(INFLORA_HAVE_AVX512_VARIANT)
    {
      const char* m = firstMissing({"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma"});
      reg.variants[reg.count++] = {"avx512", avx512Kernels, *m == 0, m};
    }
#endif
    return reg;
  }();
  return r;
}

struct Choice {
  KernelTable table;
  std::string reason;
};

Choice& choice() {
  static Choice c = [] {
    const Registry& reg = registry();
    const KernelVariant* best = &reg.variants[0];
    std::string why;
    for (int i = 1; i < reg.count; i++) {
      const KernelVariant& v = reg.variants[i];
      if (v.supported) best = &v;
      else why += std::string(why.empty() ? "" : "; ") + v.name + " not used: the CPU lacks " + v.missing;
    }
    std::string reason = best == &reg.variants[0] && reg.count == 1
                             ? "the only variant built"
                             : std::string("the fastest the CPU supports") + (why.empty() ? "" : " (" + why + ")");
    const char* forced = std::getenv("INFLORA_KERNELS");
    if (forced != nullptr && *forced != 0) {
      const KernelVariant* f = nullptr;
      for (int i = 0; i < reg.count; i++) {
        if (std::strcmp(reg.variants[i].name, forced) == 0) f = &reg.variants[i];
      }
      if (f == nullptr) reason = std::string("INFLORA_KERNELS=") + forced + " is not a built variant; " + reason;
      else if (!f->supported)
        reason = std::string("INFLORA_KERNELS=") + forced + " ignored: the CPU lacks " + f->missing + "; " + reason;
      else {
        best = f;
        reason = std::string("INFLORA_KERNELS=") + forced;
      }
    }
    return Choice{best->table(), reason};
  }();
  return c;
}

}  // namespace

const KernelVariant* kernelVariants(int* count) {
  *count = registry().count;
  return registry().variants;
}

const KernelTable& kernelTable() { return choice().table; }

const char* kernelReason() { return choice().reason.c_str(); }

bool useKernels(const char* name) {
  const Registry& reg = registry();
  for (int i = 0; i < reg.count; i++) {
    const KernelVariant& v = reg.variants[i];
    if (std::strcmp(v.name, name) != 0 || !v.supported) continue;
    choice().table = v.table();
    choice().reason = std::string("set by useKernels(\"") + name + "\")";
    return true;
  }
  return false;
}

}  // namespace inflora
