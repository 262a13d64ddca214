// Vectorisable float32 loops of the elementwise kernels. kernels_impl.cc is compiled once per variant: the
// baseline x86-64 (SSE2), AVX2+FMA and AVX-512 (F/BW/DQ/VL, 512-bit vectors); kernelTable() picks the best
// one the CPU runs, once, and says why. The two FMA builds contract the same multiply-adds and agree bit for
// bit; the baseline's exp, erf and softmax differ from them in the last bit or two.
#pragma once

#include <cstdint>

namespace inflora {

constexpr int kMaxRank = 16;

// The output walk of a broadcasting binary op: dims of size 1 dropped, mergeable neighbours merged; the
// last dim's strides are 0 (broadcast) or 1.
struct Walk {
  int rank = 0;
  int64_t shape[kMaxRank];
  int64_t sa[kMaxRank];
  int64_t sb[kMaxRank];
};

// kAddInPlace is kAdd for o == a (the restrict-qualified loops must not see aliased pointers).
enum class BinaryOp { kAdd, kSub, kMul, kDiv, kSqDiff, kAddInPlace };
enum class UnaryOp { kNeg, kExp, kSquare, kSqrt, kRsqrt, kReciprocal, kAbs, kErf };

struct KernelTable {
  const char* name;
  // The outer rows [rowBegin, rowEnd) of the walk (all dims but the last); o points at the whole output.
  void (*binary)(BinaryOp op, const float* a, const float* b, float* o, const Walk& w, int64_t rowBegin,
                 int64_t rowEnd);
  void (*unary)(UnaryOp op, const float* x, float* o, int64_t n);
  // Softmax of each row of a rows×cols matrix.
  void (*softmax)(const float* x, float* o, int64_t rows, int64_t cols);
  // The model's fused ops (worker/model/fused_kernels.ts states each contract), rows of `cols` elements:
  // LayerNorm of each row (biased variance) and its input gradient, statistics recomputed from x.
  void (*layerNorm)(const float* x, const float* gamma, const float* beta, float* o, int64_t rows, int64_t cols,
                    float eps);
  void (*layerNormGrad)(const float* dy, const float* x, const float* gamma, float* o, int64_t rows, int64_t cols,
                        float eps);
  // Exact GELU x·Φ(x) and dy·(Φ(x) + x·φ(x)) over n elements.
  void (*gelu)(const float* x, float* o, int64_t n);
  void (*geluGrad)(const float* dy, const float* x, float* o, int64_t n);
  // Softmax's backward of each row: p ⊙ (dp − Σ dp ⊙ p).
  void (*softmaxGrad)(const float* dp, const float* p, float* o, int64_t rows, int64_t cols);
};

KernelTable baselineKernels();
KernelTable avx2Kernels();
KernelTable avx512Kernels();

// A variant the addon was built with, and whether this CPU runs it.
struct KernelVariant {
  const char* name;
  KernelTable (*table)();
  bool supported;
  // What the CPU lacks when unsupported ("" otherwise).
  const char* missing;
};

// Every variant built, fastest last.
const KernelVariant* kernelVariants(int* count);

// The variant in use: the fastest the CPU supports, or INFLORA_KERNELS=<name> when that one is supported.
const KernelTable& kernelTable();
// Why kernelTable() is the variant it is (for blasInfo and the bench header).
const char* kernelReason();
// Switches the variant process-wide (tests compare the variants); false when unknown or unsupported.
bool useKernels(const char* name);

}  // namespace inflora
