// The loops behind kernels.h, compiled once per instruction-set variant (INFLORA_KERNEL_VARIANT).
#include <cmath>

#include "fast_math.h"
#include "kernels.h"

#ifndef INFLORA_KERNEL_VARIANT
#error "define INFLORA_KERNEL_VARIANT (baseline, avx2 or avx512)"
#endif

namespace inflora {
namespace INFLORA_KERNEL_VARIANT {
namespace {

struct AddOp {
  static float f(float a, float b) { return a + b; }
};
struct SubOp {
  static float f(float a, float b) { return a - b; }
};
struct MulOp {
  static float f(float a, float b) { return a * b; }
};
struct DivOp {
  static float f(float a, float b) { return a / b; }
};
struct SqDiffOp {
  static float f(float a, float b) { return (a - b) * (a - b); }
};

template <class Op>
void binaryInner(const float* __restrict a, int64_t sa, const float* __restrict b, int64_t sb, float* __restrict o,
                 int64_t n) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; i++) o[i] = Op::f(a[i], b[i]);
  } else if (sa == 1) {
    const float bv = *b;
    for (int64_t i = 0; i < n; i++) o[i] = Op::f(a[i], bv);
  } else if (sb == 1) {
    const float av = *a;
    for (int64_t i = 0; i < n; i++) o[i] = Op::f(av, b[i]);
  } else {
    const float v = Op::f(*a, *b);
    for (int64_t i = 0; i < n; i++) o[i] = v;
  }
}

template <class Op>
void binaryWalk(const float* a, const float* b, float* o, const Walk& w, int64_t t0, int64_t t1) {
  const int last = w.rank - 1;
  const int64_t n = w.shape[last];
  // The odometer's position and offsets at outer row t0.
  int64_t idx[kMaxRank] = {0};
  int64_t offA = 0, offB = 0;
  {
    int64_t rem = t0;
    for (int d = last - 1; d >= 0; d--) {
      idx[d] = rem % w.shape[d];
      rem /= w.shape[d];
      offA += idx[d] * w.sa[d];
      offB += idx[d] * w.sb[d];
    }
  }
  for (int64_t t = t0; t < t1; t++) {
    binaryInner<Op>(a + offA, w.sa[last], b + offB, w.sb[last], o + t * n, n);
    // Odometer over the outer dims.
    for (int d = last - 1; d >= 0; d--) {
      idx[d]++;
      offA += w.sa[d];
      offB += w.sb[d];
      if (idx[d] < w.shape[d]) break;
      offA -= w.sa[d] * w.shape[d];
      offB -= w.sb[d] * w.shape[d];
      idx[d] = 0;
    }
  }
}

void binary(BinaryOp op, const float* a, const float* b, float* o, const Walk& w, int64_t t0, int64_t t1) {
  switch (op) {
    case BinaryOp::kAdd: return binaryWalk<AddOp>(a, b, o, w, t0, t1);
    case BinaryOp::kSub: return binaryWalk<SubOp>(a, b, o, w, t0, t1);
    case BinaryOp::kMul: return binaryWalk<MulOp>(a, b, o, w, t0, t1);
    case BinaryOp::kDiv: return binaryWalk<DivOp>(a, b, o, w, t0, t1);
    case BinaryOp::kSqDiff: return binaryWalk<SqDiffOp>(a, b, o, w, t0, t1);
    case BinaryOp::kAddInPlace: {
      // A contiguous rank-1 walk: the rows are single elements' runs of length shape[0].
      const int64_t n = w.shape[0];
      for (int64_t i = t0 * n; i < t1 * n; i++) o[i] = o[i] + b[i];
      return;
    }
  }
}

#define UNARY_LOOP(expr)                                          \
  for (int64_t i = 0; i < n; i++) {                               \
    const float v = x[i];                                         \
    o[i] = (expr);                                                \
  }                                                               \
  return

void unary(UnaryOp op, const float* __restrict x, float* __restrict o, int64_t n) {
  switch (op) {
    case UnaryOp::kNeg: UNARY_LOOP(-v);
    case UnaryOp::kExp: UNARY_LOOP(fastExp(v));
    case UnaryOp::kSquare: UNARY_LOOP(v * v);
    case UnaryOp::kSqrt: UNARY_LOOP(std::sqrt(v));
    case UnaryOp::kRsqrt: UNARY_LOOP(1.0f / std::sqrt(v));
    case UnaryOp::kReciprocal: UNARY_LOOP(1.0f / v);
    case UnaryOp::kAbs: UNARY_LOOP(std::fabs(v));
    case UnaryOp::kErf: UNARY_LOOP(tfjsErf(v));
  }
}

// x − max, exp, divided by the sum (accumulated in double): the cpu kernel's steps.
void softmax(const float* __restrict x, float* __restrict o, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = x + r * cols;
    float* orow = o + r * cols;
    float m = -__builtin_inff();
    int nan = 0;
    for (int64_t j = 0; j < cols; j++) {
      m = xr[j] > m ? xr[j] : m;
      nan |= xr[j] != xr[j];
    }
    if (nan) m = __builtin_nanf("");
    for (int64_t j = 0; j < cols; j++) orow[j] = fastExp(xr[j] - m);
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t j = 0;
    for (; j + 3 < cols; j += 4) {
      s0 += orow[j];
      s1 += orow[j + 1];
      s2 += orow[j + 2];
      s3 += orow[j + 3];
    }
    for (; j < cols; j++) s0 += orow[j];
    const float s = static_cast<float>((s0 + s1) + (s2 + s3));
    for (int64_t k = 0; k < cols; k++) orow[k] = orow[k] / s;
  }
}

// Σ x[j]·y[j] (y = nullptr: Σ x[j]) in double over four chains: the same order in every variant, so the
// FMA builds agree bit for bit (a vectorised float sum would change its order with the vector width).
double rowSum(const float* __restrict x, const float* __restrict y, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t j = 0;
  if (y == nullptr) {
    for (; j + 3 < n; j += 4) {
      s0 += x[j];
      s1 += x[j + 1];
      s2 += x[j + 2];
      s3 += x[j + 3];
    }
    for (; j < n; j++) s0 += x[j];
  } else {
    for (; j + 3 < n; j += 4) {
      s0 += static_cast<double>(x[j] * y[j]);
      s1 += static_cast<double>(x[j + 1] * y[j + 1]);
      s2 += static_cast<double>(x[j + 2] * y[j + 2]);
      s3 += static_cast<double>(x[j + 3] * y[j + 3]);
    }
    for (; j < n; j++) s0 += static_cast<double>(x[j] * y[j]);
  }
  return (s0 + s1) + (s2 + s3);
}

// A row's mean and 1/√(biased variance + eps), as the op chain (worker/model/fused_ops.ts) forms them:
// the variance from the float32 centred values. `scratch` holds the centred row.
void rowStats(const float* __restrict x, float* __restrict scratch, int64_t n, float eps, float* mean, float* rstd) {
  // Times 1/n in double, as the Mean kernel (native/src/elementwise.cc) scales its sums.
  const double inv = 1.0 / static_cast<double>(n);
  const float mu = static_cast<float>(rowSum(x, nullptr, n) * inv);
  for (int64_t j = 0; j < n; j++) scratch[j] = x[j] - mu;
  const float var = static_cast<float>(rowSum(scratch, scratch, n) * inv);
  *mean = mu;
  *rstd = 1.0f / std::sqrt(var + eps);
}

void layerNorm(const float* __restrict x, const float* __restrict g, const float* __restrict b, float* __restrict o,
               int64_t rows, int64_t cols, float eps) {
  for (int64_t r = 0; r < rows; r++) {
    float* orow = o + r * cols;
    float mu, rstd;
    rowStats(x + r * cols, orow, cols, eps, &mu, &rstd);
    for (int64_t j = 0; j < cols; j++) orow[j] = orow[j] * rstd * g[j] + b[j];
  }
}

// rstd · (g − mean(g) − xn · mean(g · xn)), g = dy · γ, xn = (x − mean) · rstd; o holds xn meanwhile.
void layerNormGrad(const float* __restrict dy, const float* __restrict x, const float* __restrict g,
                   float* __restrict o, int64_t rows, int64_t cols, float eps) {
  for (int64_t r = 0; r < rows; r++) {
    const float* dyr = dy + r * cols;
    float* orow = o + r * cols;
    float mu, rstd;
    rowStats(x + r * cols, orow, cols, eps, &mu, &rstd);
    double sg0 = 0, sg1 = 0, sgx0 = 0, sgx1 = 0;
    int64_t j = 0;
    for (; j < cols; j++) orow[j] = orow[j] * rstd;
    for (j = 0; j + 1 < cols; j += 2) {
      const float ga = dyr[j] * g[j], gb = dyr[j + 1] * g[j + 1];
      sg0 += ga;
      sg1 += gb;
      sgx0 += static_cast<double>(ga * orow[j]);
      sgx1 += static_cast<double>(gb * orow[j + 1]);
    }
    for (; j < cols; j++) {
      const float ga = dyr[j] * g[j];
      sg0 += ga;
      sgx0 += static_cast<double>(ga * orow[j]);
    }
    const double inv = 1.0 / static_cast<double>(cols);
    const float meanG = static_cast<float>((sg0 + sg1) * inv);
    const float meanGx = static_cast<float>((sgx0 + sgx1) * inv);
    for (int64_t k = 0; k < cols; k++) orow[k] = ((dyr[k] * g[k] - meanG) - orow[k] * meanGx) * rstd;
  }
}

constexpr float kSqrtHalf = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

void gelu(const float* __restrict x, float* __restrict o, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float cdf = (tfjsErf(x[i] * kSqrtHalf) + 1.0f) * 0.5f;
    o[i] = x[i] * cdf;
  }
}

void geluGrad(const float* __restrict dy, const float* __restrict x, float* __restrict o, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i];
    const float cdf = (tfjsErf(v * kSqrtHalf) + 1.0f) * 0.5f;
    const float gauss = fastExp(v * v * -0.5f);
    o[i] = dy[i] * (cdf + gauss * v * kInvSqrt2Pi);
  }
}

void softmaxGrad(const float* __restrict dp, const float* __restrict p, float* __restrict o, int64_t rows,
                 int64_t cols) {
  for (int64_t r = 0; r < rows; r++) {
    const float* dpr = dp + r * cols;
    const float* pr = p + r * cols;
    const float s = static_cast<float>(rowSum(dpr, pr, cols));
    float* orow = o + r * cols;
    for (int64_t j = 0; j < cols; j++) orow[j] = pr[j] * (dpr[j] - s);
  }
}

}  // namespace
}  // namespace INFLORA_KERNEL_VARIANT

#define INFLORA_STR2(x) #x
#define INFLORA_STR(x) INFLORA_STR2(x)
#define INFLORA_CAT2(a, b) a##b
#define INFLORA_CAT(a, b) INFLORA_CAT2(a, b)

KernelTable INFLORA_CAT(INFLORA_KERNEL_VARIANT, Kernels)() {
  namespace v = INFLORA_KERNEL_VARIANT;
  return {INFLORA_STR(INFLORA_KERNEL_VARIANT), v::binary, v::unary, v::softmax, v::layerNorm, v::layerNormGrad,
          v::gelu, v::geluGrad, v::softmaxGrad};
}

}  // namespace inflora
