// Symmetric eigendecomposition that computes only the eigenvectors the caller asks for, after it has seen
// all eigenvalues: one Householder tridiagonalisation (dsytrd), all eigenvalues from it (dsterf), then
// MRRR vectors (dstemr) for the selected index ranges, back-transformed with dormtr. The DualGPM rules
// pick how many singular vectors they keep from the energies, so the choice has to happen in between.
//
// eighSelect(a, n, select): a row-major n×n (lower triangle read); select(valuesAscending) returns a flat
// array [lo0, hi0, lo1, hi1, ...] of half-open ranges of ascending eigenvalue indices. Returns
// { values (ascending, all n), vectors (column-major n×m, the ranges' vectors in the order given) }.
//
// complementBasis(basis, d, k): orthonormal basis (column-major d×(d−k)) of the orthogonal complement of
// the column span of the row-major d×k matrix `basis` (full column rank), from its QR factorisation.
#include <lapacke.h>

#include <cmath>
#include <new>
#include <string>
#include <vector>

#include "addon.h"
#include "napi_args.h"

namespace inflora {
namespace {

napi_value wrapResult(napi_env env, napi_value values, napi_value vectors) {
  napi_value result;
  napi_create_object(env, &result);
  setProp(env, result, "values", values);
  setProp(env, result, "vectors", vectors);
  return result;
}

// Reads select's answer into `ranges`; false (with a JS error pending) when it is malformed.
bool readRanges(napi_env env, napi_value answer, int64_t n, std::vector<int64_t>* ranges) {
  bool isArray = false;
  napi_is_array(env, answer, &isArray);
  uint32_t len = 0;
  if (!isArray || napi_get_array_length(env, answer, &len) != napi_ok || len % 2 != 0) {
    throwType(env, "eighSelect: select must return an array [lo0, hi0, lo1, hi1, ...]");
    return false;
  }
  for (uint32_t i = 0; i < len; i += 2) {
    napi_value vlo, vhi;
    napi_get_element(env, answer, i, &vlo);
    napi_get_element(env, answer, i + 1, &vhi);
    int64_t lo, hi;
    if (!getDim(env, vlo, n, &lo, "eighSelect", "range start") ||
        !getDim(env, vhi, n, &hi, "eighSelect", "range end")) {
      return false;
    }
    if (lo > hi) {
      throwRange(env, "eighSelect: range start after its end");
      return false;
    }
    ranges->push_back(lo);
    ranges->push_back(hi);
  }
  return true;
}

napi_value eighSelect(napi_env env, napi_callback_info info) {
  const char* fn = "eighSelect";
  napi_value argv[3];
  if (!getArgs(env, info, 3, argv, fn)) return nullptr;
  double* a;
  size_t la;
  int64_t n;
  if (!getTyped(env, argv[0], &a, &la, fn, "a") || !getDim(env, argv[1], 46340, &n, fn, "n") ||
      !checkLength(env, la, n * n, fn, "a")) {
    return nullptr;
  }
  napi_valuetype selectType;
  napi_typeof(env, argv[2], &selectType);
  if (selectType != napi_function) return throwType(env, "eighSelect: select must be a function");
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j <= i; j++) {
      if (!std::isfinite(a[i * n + j])) {
        return throwRange(env, "eighSelect: non-finite entry at (" + std::to_string(i) + ", " + std::to_string(j) + ")");
      }
    }
  }
  try {
    const lapack_int ni = static_cast<lapack_int>(n);
    const size_t nn = static_cast<size_t>(n);
    std::vector<double> work(a, a + n * n);  // becomes the Householder reflectors
    std::vector<double> d(nn + 1), e(nn + 1), tau(nn + 1);
    if (n > 0) {
      lapack_int info = LAPACKE_dsytrd(LAPACK_COL_MAJOR, 'U', ni, work.data(), ni, d.data(), e.data(), tau.data());
      if (info != 0) return throwError(env, "eighSelect: dsytrd failed (info " + std::to_string(info) + ")");
    }
    double* values;
    napi_value jsValues = newFloat64(env, nn, &values);
    if (jsValues == nullptr) return nullptr;
    if (n > 0) {
      std::vector<double> ew(e.begin(), e.end());
      for (size_t i = 0; i < nn; i++) values[i] = d[i];
      lapack_int info = LAPACKE_dsterf(ni, values, ew.data());
      if (info != 0) return throwError(env, "eighSelect: dsterf failed (info " + std::to_string(info) + ")");
    }

    napi_value answer;
    if (napi_call_function(env, argv[2], argv[2], 1, &jsValues, &answer) != napi_ok) return nullptr;
    std::vector<int64_t> ranges;
    if (!readRanges(env, answer, n, &ranges)) return nullptr;
    int64_t m = 0;
    for (size_t i = 0; i < ranges.size(); i += 2) m += ranges[i + 1] - ranges[i];
    if (m > 4 * n) return throwRange(env, "eighSelect: more than 4n vectors requested");

    double* z;
    napi_value jsVectors = newFloat64(env, static_cast<size_t>(n * m), &z);
    if (jsVectors == nullptr) return nullptr;
    if (m == 0) return wrapResult(env, jsValues, jsVectors);

    std::vector<double> dd(nn), ee(nn), w(nn);
    int64_t col = 0;
    for (size_t r = 0; r < ranges.size(); r += 2) {
      const int64_t lo = ranges[r], hi = ranges[r + 1];
      if (hi == lo) continue;
      std::vector<lapack_int> isuppz(2 * (hi - lo));
      for (size_t i = 0; i < nn; i++) {
        dd[i] = d[i];
        ee[i] = i + 1 < nn ? e[i] : 0.0;
      }
      lapack_int found = 0;
      lapack_logical tryrac = 1;
      lapack_int info = LAPACKE_dstemr(LAPACK_COL_MAJOR, 'V', 'I', ni, dd.data(), ee.data(), 0.0, 0.0,
                                       static_cast<lapack_int>(lo + 1), static_cast<lapack_int>(hi), &found, w.data(),
                                       z + col * n, ni, static_cast<lapack_int>(hi - lo), isuppz.data(), &tryrac);
      if (info != 0) return throwError(env, "eighSelect: dstemr failed (info " + std::to_string(info) + ")");
      if (found != hi - lo) return throwError(env, "eighSelect: dstemr returned too few vectors");
      col += hi - lo;
    }
    if (n > 1) {
      lapack_int info = LAPACKE_dormtr(LAPACK_COL_MAJOR, 'L', 'U', 'N', ni, static_cast<lapack_int>(m), work.data(),
                                       ni, tau.data(), z, ni);
      if (info != 0) return throwError(env, "eighSelect: dormtr failed (info " + std::to_string(info) + ")");
    }
    return wrapResult(env, jsValues, jsVectors);
  } catch (const std::bad_alloc&) {
    return throwError(env, "eighSelect: out of memory for n = " + std::to_string(n));
  }
}

napi_value complementBasis(napi_env env, napi_callback_info info) {
  const char* fn = "complementBasis";
  napi_value argv[3];
  if (!getArgs(env, info, 3, argv, fn)) return nullptr;
  double* basis;
  size_t lb;
  int64_t d, k;
  if (!getTyped(env, argv[0], &basis, &lb, fn, "basis") || !getDim(env, argv[1], 46340, &d, fn, "d") ||
      !getDim(env, argv[2], 46340, &k, fn, "k") || !checkLength(env, lb, d * k, fn, "basis")) {
    return nullptr;
  }
  if (k > d) return throwRange(env, "complementBasis: more columns than rows");
  for (int64_t i = 0; i < d * k; i++) {
    if (!std::isfinite(basis[i])) return throwRange(env, "complementBasis: non-finite entry");
  }
  try {
    const lapack_int di = static_cast<lapack_int>(d);
    std::vector<double> q(static_cast<size_t>(d * d), 0.0);
    for (int64_t r = 0; r < d; r++) {
      for (int64_t c = 0; c < k; c++) q[c * d + r] = basis[r * k + c];
    }
    std::vector<double> tau(static_cast<size_t>(k) + 1);
    if (k > 0) {
      lapack_int info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, di, static_cast<lapack_int>(k), q.data(), di, tau.data());
      if (info != 0) return throwError(env, "complementBasis: dgeqrf failed (info " + std::to_string(info) + ")");
    }
    if (d > 0) {
      lapack_int info = LAPACKE_dorgqr(LAPACK_COL_MAJOR, di, di, static_cast<lapack_int>(k), q.data(), di, tau.data());
      if (info != 0) return throwError(env, "complementBasis: dorgqr failed (info " + std::to_string(info) + ")");
    }
    double* out;
    napi_value jsOut = newFloat64(env, static_cast<size_t>(d * (d - k)), &out);
    if (jsOut == nullptr) return nullptr;
    for (int64_t i = 0; i < d * (d - k); i++) out[i] = q[k * d + i];
    return jsOut;
  } catch (const std::bad_alloc&) {
    return throwError(env, "complementBasis: out of memory");
  }
}

}  // namespace

void registerEighSelect(napi_env env, napi_value exports) {
  exportFunction(env, exports, "eighSelect", eighSelect);
  exportFunction(env, exports, "complementBasis", complementBasis);
}

}  // namespace inflora
