// The model's fused ops for the blas backend (contracts in worker/model/fused_kernels.ts; loops in
// kernels_impl.cc, per instruction-set variant): LayerNorm and its input gradient, exact GELU and its
// gradient, softmax's backward. Each replaces a chain of five to a dozen elementwise kernels, every one a
// pass over memory, by one pass; split over the BLAS threads by rows or ranges (thread_pool.h), so the bits
// do not depend on the thread count.
#include <string>

#include "addon.h"
#include "kernels.h"
#include "napi_args.h"
#include "thread_pool.h"

namespace inflora {
namespace {

// Elements per thread range: a multiple of any vector width.
constexpr int64_t kAlign = 64;
constexpr int64_t kMaxElements = int64_t{1} << 40;

bool getEps(napi_env env, napi_value v, float* out, const char* fn) {
  double d = 0;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0) || !(d < 1)) {
    throwRange(env, std::string(fn) + ": eps must be a number in [0, 1)");
    return false;
  }
  *out = static_cast<float>(d);
  return true;
}

// rows × cols float32 arrays `names` (all of rows·cols elements), then rows and cols themselves.
bool getRows(napi_env env, napi_value* argv, int count, const char* const* names, float** arrays, int64_t rows,
             int64_t cols, const char* fn) {
  for (int i = 0; i < count; i++) {
    size_t len;
    if (!getTyped(env, argv[i], &arrays[i], &len, fn, names[i]) ||
        !checkLength(env, len, mulOrNeg(rows, cols), fn, names[i])) {
      return false;
    }
  }
  return true;
}

bool getVector(napi_env env, napi_value v, float** out, int64_t cols, const char* fn, const char* what) {
  size_t len;
  return getTyped(env, v, out, &len, fn, what) && checkLength(env, len, cols, fn, what);
}

// layerNorm(x, gamma, beta, out, rows, cols, eps)
napi_value layerNorm(napi_env env, napi_callback_info info) {
  const char* fn = "layerNorm";
  napi_value argv[7];
  if (!getArgs(env, info, 7, argv, fn)) return nullptr;
  int64_t rows, cols;
  float eps;
  if (!getDim(env, argv[4], kMaxElements, &rows, fn, "rows") || !getDim(env, argv[5], kMaxElements, &cols, fn, "cols") ||
      !getEps(env, argv[6], &eps, fn)) {
    return nullptr;
  }
  const char* names[] = {"x", "out"};
  napi_value arrays[] = {argv[0], argv[3]};
  float* p[2];
  float *gamma, *beta;
  if (!getRows(env, arrays, 2, names, p, rows, cols, fn) || !getVector(env, argv[1], &gamma, cols, fn, "gamma") ||
      !getVector(env, argv[2], &beta, cols, fn, "beta")) {
    return nullptr;
  }
  if (cols == 0) return nullptr;
  const KernelTable& k = kernelTable();
  parallelFor(rows, 6 * cols, 1, [&](int64_t r0, int64_t r1) {
    k.layerNorm(p[0] + r0 * cols, gamma, beta, p[1] + r0 * cols, r1 - r0, cols, eps);
  });
  return nullptr;
}

// layerNormGrad(dy, x, gamma, out, rows, cols, eps)
napi_value layerNormGrad(napi_env env, napi_callback_info info) {
  const char* fn = "layerNormGrad";
  napi_value argv[7];
  if (!getArgs(env, info, 7, argv, fn)) return nullptr;
  int64_t rows, cols;
  float eps;
  if (!getDim(env, argv[4], kMaxElements, &rows, fn, "rows") || !getDim(env, argv[5], kMaxElements, &cols, fn, "cols") ||
      !getEps(env, argv[6], &eps, fn)) {
    return nullptr;
  }
  const char* names[] = {"dy", "x", "out"};
  napi_value arrays[] = {argv[0], argv[1], argv[3]};
  float* p[3];
  float* gamma;
  if (!getRows(env, arrays, 3, names, p, rows, cols, fn) || !getVector(env, argv[2], &gamma, cols, fn, "gamma")) {
    return nullptr;
  }
  if (cols == 0) return nullptr;
  const KernelTable& k = kernelTable();
  parallelFor(rows, 10 * cols, 1, [&](int64_t r0, int64_t r1) {
    k.layerNormGrad(p[0] + r0 * cols, p[1] + r0 * cols, gamma, p[2] + r0 * cols, r1 - r0, cols, eps);
  });
  return nullptr;
}

// gelu(x, out), geluGrad(dy, x, out): elementwise over equal lengths.
napi_value geluEither(napi_env env, napi_callback_info info, bool grad) {
  const char* fn = grad ? "geluGrad" : "gelu";
  const int count = grad ? 3 : 2;
  napi_value argv[3];
  if (!getArgs(env, info, count, argv, fn)) return nullptr;
  const char* gradNames[] = {"dy", "x", "out"};
  const char* names[] = {"x", "out"};
  float* p[3];
  size_t len0;
  if (!getTyped(env, argv[0], &p[0], &len0, fn, grad ? gradNames[0] : names[0])) return nullptr;
  const int64_t n = static_cast<int64_t>(len0);
  if (!getRows(env, argv, count, grad ? gradNames : names, p, 1, n, fn)) return nullptr;
  const KernelTable& k = kernelTable();
  parallelFor(n, grad ? 24 : 16, kAlign, [&](int64_t i0, int64_t i1) {
    if (grad) k.geluGrad(p[0] + i0, p[1] + i0, p[2] + i0, i1 - i0);
    else k.gelu(p[0] + i0, p[1] + i0, i1 - i0);
  });
  return nullptr;
}

napi_value gelu(napi_env env, napi_callback_info info) { return geluEither(env, info, false); }
napi_value geluGrad(napi_env env, napi_callback_info info) { return geluEither(env, info, true); }

// softmaxGrad(dp, p, out, rows, cols)
napi_value softmaxGrad(napi_env env, napi_callback_info info) {
  const char* fn = "softmaxGrad";
  napi_value argv[5];
  if (!getArgs(env, info, 5, argv, fn)) return nullptr;
  int64_t rows, cols;
  if (!getDim(env, argv[3], kMaxElements, &rows, fn, "rows") || !getDim(env, argv[4], kMaxElements, &cols, fn, "cols")) {
    return nullptr;
  }
  const char* names[] = {"dp", "p", "out"};
  float* p[3];
  if (!getRows(env, argv, 3, names, p, rows, cols, fn)) return nullptr;
  if (cols == 0) return nullptr;
  const KernelTable& k = kernelTable();
  parallelFor(rows, 4 * cols, 1, [&](int64_t r0, int64_t r1) {
    k.softmaxGrad(p[0] + r0 * cols, p[1] + r0 * cols, p[2] + r0 * cols, r1 - r0, cols);
  });
  return nullptr;
}

}  // namespace

void registerFused(napi_env env, napi_value exports) {
  exportFunction(env, exports, "layerNorm", layerNorm);
  exportFunction(env, exports, "layerNormGrad", layerNormGrad);
  exportFunction(env, exports, "gelu", gelu);
  exportFunction(env, exports, "geluGrad", geluGrad);
  exportFunction(env, exports, "softmaxGrad", softmaxGrad);
}

}  // namespace inflora
