// Float64 symmetric eigensolvers from LAPACK, for the coordinator's SVD work. Input is a row-major n×n
// matrix of which only the lower triangle is read (the column-major upper triangle, so no transpose is
// needed); output eigenvalues are DESCENDING and eigenvectors are the columns of a row-major n×count matrix.
#include <lapacke.h>

#include <cmath>
#include <new>
#include <string>
#include <vector>

#include "addon.h"
#include "napi_args.h"

namespace inflora {
namespace {

bool lowerFinite(const double* a, int64_t n, int64_t* badRow, int64_t* badCol) {
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j <= i; j++) {
      if (!std::isfinite(a[i * n + j])) {
        *badRow = i;
        *badCol = j;
        return false;
      }
    }
  }
  return true;
}

// Builds { values, vectors } from LAPACK's ascending output: w[0..m), z column-major n×m.
napi_value descendingResult(napi_env env, const double* w, const double* z, int64_t n, int64_t m, bool vectors) {
  double* values;
  napi_value jsValues = newFloat64(env, static_cast<size_t>(m), &values);
  if (jsValues == nullptr) return nullptr;
  for (int64_t j = 0; j < m; j++) values[j] = w[m - 1 - j];
  napi_value result;
  napi_create_object(env, &result);
  setProp(env, result, "values", jsValues);
  if (vectors) {
    double* out;
    napi_value jsVectors = newFloat64(env, static_cast<size_t>(n * m), &out);
    if (jsVectors == nullptr) return nullptr;
    for (int64_t j = 0; j < m; j++) {
      const double* col = z + (m - 1 - j) * n;
      for (int64_t r = 0; r < n; r++) out[r * m + j] = col[r];
    }
    setProp(env, result, "vectors", jsVectors);
  }
  return result;
}

struct Input {
  const double* a = nullptr;
  int64_t n = 0;
};

bool readSymmetric(napi_env env, napi_value va, napi_value vn, Input* in, const char* fn) {
  double* a;
  size_t la;
  if (!getTyped(env, va, &a, &la, fn, "a") || !getDim(env, vn, 46340, &in->n, fn, "n") ||
      !checkLength(env, la, in->n * in->n, fn, "a")) {
    return false;
  }
  int64_t r = 0, c = 0;
  if (!lowerFinite(a, in->n, &r, &c)) {
    throwRange(env, std::string(fn) + ": non-finite entry at (" + std::to_string(r) + ", " + std::to_string(c) + ")");
    return false;
  }
  in->a = a;
  return true;
}

// dsyevr(a, n, count, wantVectors): the `count` largest eigenpairs (MRRR for all, bisection + inverse
// iteration for a subset).
napi_value dsyevr(napi_env env, napi_callback_info info) {
  const char* fn = "dsyevr";
  napi_value argv[4];
  if (!getArgs(env, info, 4, argv, fn)) return nullptr;
  Input in;
  int64_t count;
  bool wantVectors;
  if (!readSymmetric(env, argv[0], argv[1], &in, fn) || !getDim(env, argv[2], kMaxInt, &count, fn, "count") ||
      !getBool(env, argv[3], &wantVectors, fn, "wantVectors")) {
    return nullptr;
  }
  const int64_t n = in.n;
  if (count > n) return throwRange(env, "dsyevr: count exceeds n");
  if (count == 0) return descendingResult(env, nullptr, nullptr, n, 0, wantVectors);
  try {
    std::vector<double> a(in.a, in.a + n * n);  // LAPACK overwrites its input
    std::vector<double> w(n);
    std::vector<double> z(wantVectors ? n * count : 1);
    std::vector<lapack_int> isuppz(2 * count);
    lapack_int found = 0;
    const bool all = count == n;
    const lapack_int ni = static_cast<lapack_int>(n);
    lapack_int info = LAPACKE_dsyevr(LAPACK_COL_MAJOR, wantVectors ? 'V' : 'N', all ? 'A' : 'I', 'U', ni, a.data(),
                                     ni, 0.0, 0.0, static_cast<lapack_int>(n - count + 1), ni, 0.0, &found, w.data(),
                                     z.data(), ni, isuppz.data());
    if (info != 0) return throwError(env, "dsyevr failed (info " + std::to_string(info) + ")");
    if (found != count) return throwError(env, "dsyevr returned " + std::to_string(found) + " eigenpairs");
    return descendingResult(env, w.data(), z.data(), n, count, wantVectors);
  } catch (const std::bad_alloc&) {
    return throwError(env, "dsyevr: out of memory for n = " + std::to_string(n));
  }
}

// dsyevd(a, n): all eigenpairs by divide and conquer.
napi_value dsyevd(napi_env env, napi_callback_info info) {
  const char* fn = "dsyevd";
  napi_value argv[2];
  if (!getArgs(env, info, 2, argv, fn)) return nullptr;
  Input in;
  if (!readSymmetric(env, argv[0], argv[1], &in, fn)) return nullptr;
  const int64_t n = in.n;
  if (n == 0) return descendingResult(env, nullptr, nullptr, 0, 0, true);
  try {
    std::vector<double> a(in.a, in.a + n * n);  // overwritten by the eigenvectors
    std::vector<double> w(n);
    const lapack_int ni = static_cast<lapack_int>(n);
    lapack_int info = LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'U', ni, a.data(), ni, w.data());
    if (info != 0) return throwError(env, "dsyevd failed (info " + std::to_string(info) + ")");
    return descendingResult(env, w.data(), a.data(), n, n, true);
  } catch (const std::bad_alloc&) {
    return throwError(env, "dsyevd: out of memory for n = " + std::to_string(n));
  }
}

}  // namespace

void registerLapack(napi_env env, napi_value exports) {
  exportFunction(env, exports, "dsyevr", dsyevr);
  exportFunction(env, exports, "dsyevd", dsyevd);
}

}  // namespace inflora
