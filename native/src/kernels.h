// Vectorisable float32 loops of the elementwise kernels. kernels_impl.cc is compiled twice: for the
// baseline x86-64 (SSE2) and with AVX2+FMA; kernelTable() picks the variant the CPU runs, once.
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
  void (*binary)(BinaryOp op, const float* a, const float* b, float* o, const Walk& w);
  void (*unary)(UnaryOp op, const float* x, float* o, int64_t n);
  // Softmax of each row of a rows×cols matrix.
  void (*softmax)(const float* x, float* o, int64_t rows, int64_t cols);
};

KernelTable baselineKernels();
KernelTable avx2Kernels();

// The best variant for this CPU.
const KernelTable& kernelTable();

}  // namespace inflora
