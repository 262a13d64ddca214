// Row-major GEMM with transpose flags and a batch, in the semantics of tfjs's BatchMatMul on the cpu
// backend: a is [batchA, m, k] ([batchA, k, m] when transA), b is [batchB, k, n] ([batchB, n, k] when
// transB), c is [max(batchA, batchB), m, n], and batch i multiplies a[i % batchA] by b[i % batchB].
#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "addon.h"
#include "napi_args.h"
#include "thread_pool.h"

namespace inflora {
namespace {

// Float32 operations (2·m·n·k per product) sgemm has done in this process: the benchmarks divide it by a
// step's time for the step's achieved GFLOP/s.
std::atomic<double> sgemmFlops{0.0};

// Per matrix product: 32 M multiply-adds ≈ 1 ms on one core.
constexpr double kSingleThreadMacs = 32.0 * 1024 * 1024;

template <typename T>
void gemmCall(bool ta, bool tb, int m, int n, int k, const T* a, int lda, const T* b, int ldb, T* c, int ldc);

template <>
void gemmCall<float>(bool ta, bool tb, int m, int n, int k, const float* a, int lda, const float* b, int ldb,
                     float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a,
              lda, b, ldb, 0.0f, c, ldc);
}

template <>
void gemmCall<double>(bool ta, bool tb, int m, int n, int k, const double* a, int lda, const double* b,
                      int ldb, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0, a,
              lda, b, ldb, 0.0, c, ldc);
}

// (a, b, c, batchA, batchB, m, n, k, transA, transB)
template <typename T>
napi_value gemm(napi_env env, napi_callback_info info, const char* fn) {
  napi_value argv[10];
  if (!getArgs(env, info, 10, argv, fn)) return nullptr;
  T *a, *b, *c;
  size_t la, lb, lc;
  int64_t batchA, batchB, m, n, k;
  bool ta, tb;
  if (!getTyped(env, argv[0], &a, &la, fn, "a") || !getTyped(env, argv[1], &b, &lb, fn, "b") ||
      !getTyped(env, argv[2], &c, &lc, fn, "c") || !getDim(env, argv[3], kMaxInt, &batchA, fn, "batchA") ||
      !getDim(env, argv[4], kMaxInt, &batchB, fn, "batchB") || !getDim(env, argv[5], kMaxInt, &m, fn, "m") ||
      !getDim(env, argv[6], kMaxInt, &n, fn, "n") || !getDim(env, argv[7], kMaxInt, &k, fn, "k") ||
      !getBool(env, argv[8], &ta, fn, "transA") || !getBool(env, argv[9], &tb, fn, "transB")) {
    return nullptr;
  }
  if (batchA < 1 || batchB < 1) return throwRange(env, std::string(fn) + ": batch sizes must be at least 1");
  const int64_t batch = std::max(batchA, batchB);
  if (!checkLength(env, la, mulOrNeg(batchA, m, k), fn, "a") ||
      !checkLength(env, lb, mulOrNeg(batchB, k, n), fn, "b") || !checkLength(env, lc, mulOrNeg(batch, m, n), fn, "c")) {
    return nullptr;
  }
  if (m == 0 || n == 0) return nullptr;
  if (k == 0) {
    std::memset(c, 0, lc * sizeof(T));
    return nullptr;
  }
  const int lda = static_cast<int>(ta ? m : k);
  const int ldb = static_cast<int>(tb ? k : n);
  // OpenBLAS splits any product above 256k multiply-adds over all its threads; below a few milliseconds of
  // work the second thread's wake-up and spin-wait cost more than it saves, and on a busy machine the
  // caller then waits for a descheduled helper. Small products run on one thread.
  // A batch of such small products (attention's per-image, per-head scores) goes over the threads one
  // product each instead: every product is still computed by one thread alone, so the bits do not depend on
  // the thread count.
  const int threads = openblas_get_num_threads();
  const double macs = static_cast<double>(m) * n * k;
  const bool single = threads > 1 && macs < kSingleThreadMacs;
  if (single) openblas_set_num_threads(1);
  const auto products = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) {
      gemmCall<T>(ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
                  a + (i % batchA) * m * k, lda, b + (i % batchB) * k * n, ldb, c + i * m * n, static_cast<int>(n));
    }
  };
  if (single && batch > 1) {
    parallelFor(batch, static_cast<int64_t>(std::min(macs, 1e9)), 1, products, threads);
  } else {
    products(0, batch);
  }
  if (single) openblas_set_num_threads(threads);
  if (sizeof(T) == sizeof(float)) {
    const double flops = 2.0 * static_cast<double>(batch) * static_cast<double>(m) * n * k;
    double seen = sgemmFlops.load(std::memory_order_relaxed);
    while (!sgemmFlops.compare_exchange_weak(seen, seen + flops, std::memory_order_relaxed)) {
    }
  }
  return nullptr;
}

// sgemmFlops(): float32 operations done by sgemm so far in this process.
napi_value sgemmFlopsJs(napi_env env, napi_callback_info) {
  napi_value v;
  napi_create_double(env, sgemmFlops.load(std::memory_order_relaxed), &v);
  return v;
}

napi_value sgemm(napi_env env, napi_callback_info info) { return gemm<float>(env, info, "sgemm"); }
napi_value dgemm(napi_env env, napi_callback_info info) { return gemm<double>(env, info, "dgemm"); }

// dsyrk(a, c, n, k): c (n×n) = a aᵀ for a row-major n×k, both triangles filled.
napi_value dsyrk(napi_env env, napi_callback_info info) {
  const char* fn = "dsyrk";
  napi_value argv[4];
  if (!getArgs(env, info, 4, argv, fn)) return nullptr;
  double *a, *c;
  size_t la, lc;
  int64_t n, k;
  if (!getTyped(env, argv[0], &a, &la, fn, "a") || !getTyped(env, argv[1], &c, &lc, fn, "c") ||
      !getDim(env, argv[2], kMaxInt, &n, fn, "n") || !getDim(env, argv[3], kMaxInt, &k, fn, "k") ||
      !checkLength(env, la, n * k, fn, "a") || !checkLength(env, lc, n * n, fn, "c")) {
    return nullptr;
  }
  if (n == 0) return nullptr;
  if (k == 0) {
    std::memset(c, 0, lc * sizeof(double));
    return nullptr;
  }
  const int ni = static_cast<int>(n);
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, ni, static_cast<int>(k), 1.0, a, static_cast<int>(k), 0.0,
              c, ni);
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j < i; j++) c[j * n + i] = c[i * n + j];
  }
  return nullptr;
}

}  // namespace

void registerGemm(napi_env env, napi_value exports) {
  exportFunction(env, exports, "sgemm", sgemm);
  exportFunction(env, exports, "dgemm", dgemm);
  exportFunction(env, exports, "dsyrk", dsyrk);
  exportFunction(env, exports, "sgemmFlops", sgemmFlopsJs);
}

}  // namespace inflora
