// Float32 elementwise kernels for the blas backend, in tfjs's semantics: binary ops with numpy
// broadcasting, unary ops, softmax over the last axis (loops in kernels_impl.cc), transpose and
// reductions over a contiguous block of axes. The pure-JS cpu kernels they replace cost 10–300 ns per
// element; these run at memory speed, split over the BLAS threads (thread_pool.h) by output rows or
// ranges, so every output element is computed by the same operations in the same order on 1 or N threads.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "addon.h"
#include "kernels.h"
#include "napi_args.h"
#include "thread_pool.h"

namespace inflora {
namespace {

bool getString(napi_env env, napi_value v, std::string* out, const char* fn, const char* what) {
  char buf[32];
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, buf, sizeof buf, &len) != napi_ok) {
    throwType(env, std::string(fn) + ": " + what + " must be a string");
    return false;
  }
  out->assign(buf, len);
  return true;
}

// A JS array of non-negative integers (a shape or a permutation).
bool getInts(napi_env env, napi_value v, std::vector<int64_t>* out, const char* fn, const char* what) {
  bool isArray = false;
  uint32_t len = 0;
  napi_is_array(env, v, &isArray);
  if (!isArray || napi_get_array_length(env, v, &len) != napi_ok || len > kMaxRank) {
    throwType(env, std::string(fn) + ": " + what + " must be an array of at most 16 integers");
    return false;
  }
  out->resize(len);
  for (uint32_t i = 0; i < len; i++) {
    napi_value e;
    napi_get_element(env, v, i, &e);
    if (!getDim(env, e, int64_t{1} << 40, &(*out)[i], fn, what)) return false;
  }
  return true;
}

// A JS array of Float32Arrays, each of `length` elements (addN's inputs, sumF64's parts).
bool getFloat32Arrays(napi_env env, napi_value v, size_t length, bool nonEmpty, std::vector<const float*>* out,
                      const char* fn, const char* what) {
  bool isArray = false;
  uint32_t count = 0;
  napi_is_array(env, v, &isArray);
  if (!isArray || napi_get_array_length(env, v, &count) != napi_ok || (nonEmpty && count == 0)) {
    throwType(env, std::string(fn) + ": " + what + " must be " + (nonEmpty ? "a non-empty" : "an") +
                       " array of Float32Arrays");
    return false;
  }
  out->resize(count);
  for (uint32_t i = 0; i < count; i++) {
    napi_value e;
    napi_get_element(env, v, i, &e);
    float* p;
    size_t len;
    if (!getTyped(env, e, &p, &len, fn, "every element") ||
        !checkLength(env, len, static_cast<int64_t>(length), fn, "an element")) {
      return false;
    }
    (*out)[i] = p;
  }
  return true;
}

// Element count, or −1 on overflow.
int64_t sizeOf(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    n = mulOrNeg(n, d);
    if (n < 0) return -1;
  }
  return n;
}

// ---------------------------------------------------------------------------------------------------
// Binary ops with broadcasting

bool planBroadcast(const std::vector<int64_t>& as, const std::vector<int64_t>& bs, const std::vector<int64_t>& os,
                   Walk* w) {
  const int r = static_cast<int>(os.size());
  if (as.size() > os.size() || bs.size() > os.size()) return false;
  int64_t pa[kMaxRank], pb[kMaxRank], stA[kMaxRank], stB[kMaxRank];
  for (int i = 0; i < r; i++) {
    const int ia = i - (r - static_cast<int>(as.size()));
    const int ib = i - (r - static_cast<int>(bs.size()));
    pa[i] = ia >= 0 ? as[ia] : 1;
    pb[i] = ib >= 0 ? bs[ib] : 1;
    if ((pa[i] != os[i] && pa[i] != 1) || (pb[i] != os[i] && pb[i] != 1)) return false;
  }
  int64_t ca = 1, cb = 1;
  for (int i = r - 1; i >= 0; i--) {
    stA[i] = pa[i] == 1 ? 0 : ca;
    stB[i] = pb[i] == 1 ? 0 : cb;
    ca *= pa[i];
    cb *= pb[i];
  }
  w->rank = 0;
  for (int i = 0; i < r; i++) {
    if (os[i] == 1) continue;
    const int k = w->rank;
    if (k > 0 && w->sa[k - 1] == stA[i] * os[i] && w->sb[k - 1] == stB[i] * os[i]) {
      w->shape[k - 1] *= os[i];
      w->sa[k - 1] = stA[i];
      w->sb[k - 1] = stB[i];
      continue;
    }
    w->shape[k] = os[i];
    w->sa[k] = stA[i];
    w->sb[k] = stB[i];
    w->rank++;
  }
  if (w->rank == 0) {
    w->rank = 1;
    w->shape[0] = 1;
    w->sa[0] = 0;
    w->sb[0] = 0;
  }
  return true;
}

// Elements per vector register of the widest variant: split points on this multiple keep each thread's
// vector loop whole.
constexpr int64_t kAlign = 16;

// The walk over threads: by outer rows, or for a single contiguous run (rank 1), by element ranges.
void runBinary(BinaryOp kind, const float* a, const float* b, float* o, const Walk& w) {
  const KernelTable& k = kernelTable();
  if (w.rank == 1) {
    const int64_t sa = w.sa[0], sb = w.sb[0];
    parallelFor(w.shape[0], 3, kAlign, [&](int64_t i0, int64_t i1) {
      Walk part = w;
      part.shape[0] = i1 - i0;
      k.binary(kind, a + i0 * sa, b + i0 * sb, o + i0, part, 0, 1);
    });
    return;
  }
  int64_t outer = 1;
  for (int i = 0; i < w.rank - 1; i++) outer *= w.shape[i];
  parallelFor(outer, 3 * w.shape[w.rank - 1], 1,
              [&](int64_t t0, int64_t t1) { k.binary(kind, a, b, o, w, t0, t1); });
}

// binary(op, a, aShape, b, bShape, out, outShape)
napi_value binary(napi_env env, napi_callback_info info) {
  const char* fn = "binary";
  napi_value argv[7];
  if (!getArgs(env, info, 7, argv, fn)) return nullptr;
  std::string op;
  float *a, *b, *o;
  size_t la, lb, lo;
  std::vector<int64_t> as, bs, os;
  if (!getString(env, argv[0], &op, fn, "op") || !getTyped(env, argv[1], &a, &la, fn, "a") ||
      !getInts(env, argv[2], &as, fn, "aShape") || !getTyped(env, argv[3], &b, &lb, fn, "b") ||
      !getInts(env, argv[4], &bs, fn, "bShape") || !getTyped(env, argv[5], &o, &lo, fn, "out") ||
      !getInts(env, argv[6], &os, fn, "outShape") || !checkLength(env, la, sizeOf(as), fn, "a") ||
      !checkLength(env, lb, sizeOf(bs), fn, "b") || !checkLength(env, lo, sizeOf(os), fn, "out")) {
    return nullptr;
  }
  if (lo == 0) return nullptr;
  Walk w;
  if (!planBroadcast(as, bs, os, &w)) return throwRange(env, "binary: shapes do not broadcast to outShape");
  BinaryOp kind;
  if (op == "add") kind = BinaryOp::kAdd;
  else if (op == "sub") kind = BinaryOp::kSub;
  else if (op == "mul") kind = BinaryOp::kMul;
  else if (op == "div") kind = BinaryOp::kDiv;
  else if (op == "sqdiff") kind = BinaryOp::kSqDiff;
  else return throwRange(env, "binary: unknown op " + op);
  runBinary(kind, a, b, o, w);
  return nullptr;
}

// sumF64(parts, out): out[i] = ((0 + parts[0][i]) + parts[1][i]) + …, each float32 widened exactly and
// added in float64 in part order — the coordinator's reduction in micro-shard order, bit for bit the
// TypeScript loop's. Blocked over i so the float64 partial sums stay in cache across the parts.
napi_value sumF64(napi_env env, napi_callback_info info) {
  const char* fn = "sumF64";
  napi_value argv[2];
  if (!getArgs(env, info, 2, argv, fn)) return nullptr;
  double* o;
  size_t n;
  if (!getTyped(env, argv[1], &o, &n, fn, "out")) return nullptr;
  std::vector<const float*> parts;
  if (!getFloat32Arrays(env, argv[0], n, false, &parts, fn, "parts")) return nullptr;
  constexpr size_t kBlock = 2048;
  const int64_t blocks = static_cast<int64_t>((n + kBlock - 1) / kBlock);
  parallelFor(blocks, static_cast<int64_t>(kBlock * (parts.size() + 2)), 1, [&](int64_t b0, int64_t b1) {
    for (size_t i0 = b0 * kBlock; i0 < std::min(n, b1 * kBlock); i0 += kBlock) {
      const size_t i1 = std::min(n, i0 + kBlock);
      double* __restrict__ out = o;
      for (size_t i = i0; i < i1; i++) out[i] = 0.0;
      for (const float* part : parts) {
        const float* __restrict__ x = part;
        for (size_t i = i0; i < i1; i++) out[i] += static_cast<double>(x[i]);
      }
    }
  });
  return nullptr;
}

// addN(inputs, out): out = inputs[0] + inputs[1] + …, added in that order in float32 (as the cpu kernel).
napi_value addN(napi_env env, napi_callback_info info) {
  const char* fn = "addN";
  napi_value argv[2];
  if (!getArgs(env, info, 2, argv, fn)) return nullptr;
  float* o;
  size_t lo;
  if (!getTyped(env, argv[1], &o, &lo, fn, "out")) return nullptr;
  std::vector<const float*> inputs;
  if (!getFloat32Arrays(env, argv[0], lo, true, &inputs, fn, "inputs")) return nullptr;
  const uint32_t count = static_cast<uint32_t>(inputs.size());
  Walk w;
  w.rank = 1;
  w.shape[0] = static_cast<int64_t>(lo);
  w.sa[0] = 1;
  w.sb[0] = 1;
  if (count == 1) {
    std::memcpy(o, inputs[0], lo * sizeof(float));
    return nullptr;
  }
  const KernelTable& k = kernelTable();
  parallelFor(static_cast<int64_t>(lo), count + 1, kAlign, [&](int64_t i0, int64_t i1) {
    Walk part = w;
    part.shape[0] = i1 - i0;
    k.binary(BinaryOp::kAdd, inputs[0] + i0, inputs[1] + i0, o + i0, part, 0, 1);
    // Later inputs accumulate in place: the same index is read and then written, so o may alias a.
    for (uint32_t i = 2; i < count; i++) k.binary(BinaryOp::kAddInPlace, o + i0, inputs[i] + i0, o + i0, part, 0, 1);
  });
  return nullptr;
}

// ---------------------------------------------------------------------------------------------------
// Unary ops

// unary(op, x, out)
napi_value unary(napi_env env, napi_callback_info info) {
  const char* fn = "unary";
  napi_value argv[3];
  if (!getArgs(env, info, 3, argv, fn)) return nullptr;
  std::string op;
  float *x, *o;
  size_t lx, lo;
  if (!getString(env, argv[0], &op, fn, "op") || !getTyped(env, argv[1], &x, &lx, fn, "x") ||
      !getTyped(env, argv[2], &o, &lo, fn, "out") || !checkLength(env, lo, static_cast<int64_t>(lx), fn, "out")) {
    return nullptr;
  }
  const int64_t n = static_cast<int64_t>(lx);
  UnaryOp kind;
  if (op == "neg") kind = UnaryOp::kNeg;
  else if (op == "exp") kind = UnaryOp::kExp;
  else if (op == "square") kind = UnaryOp::kSquare;
  else if (op == "sqrt") kind = UnaryOp::kSqrt;
  else if (op == "rsqrt") kind = UnaryOp::kRsqrt;
  else if (op == "reciprocal") kind = UnaryOp::kReciprocal;
  else if (op == "abs") kind = UnaryOp::kAbs;
  else if (op == "erf") kind = UnaryOp::kErf;
  else return throwRange(env, "unary: unknown op " + op);
  const KernelTable& k = kernelTable();
  // erf and exp cost several times a copy per element.
  const int64_t cost = kind == UnaryOp::kErf || kind == UnaryOp::kExp ? 8 : 2;
  parallelFor(n, cost, kAlign, [&](int64_t i0, int64_t i1) { k.unary(kind, x + i0, o + i0, i1 - i0); });
  return nullptr;
}

// ---------------------------------------------------------------------------------------------------
// Softmax over the last axis.

// softmax(x, out, rows, cols)
napi_value softmax(napi_env env, napi_callback_info info) {
  const char* fn = "softmax";
  napi_value argv[4];
  if (!getArgs(env, info, 4, argv, fn)) return nullptr;
  float *x, *o;
  size_t lx, lo;
  int64_t rows, cols;
  if (!getTyped(env, argv[0], &x, &lx, fn, "x") || !getTyped(env, argv[1], &o, &lo, fn, "out") ||
      !getDim(env, argv[2], int64_t{1} << 40, &rows, fn, "rows") ||
      !getDim(env, argv[3], int64_t{1} << 40, &cols, fn, "cols") ||
      !checkLength(env, lx, mulOrNeg(rows, cols), fn, "x") || !checkLength(env, lo, mulOrNeg(rows, cols), fn, "out")) {
    return nullptr;
  }
  const KernelTable& k = kernelTable();
  parallelFor(rows, 8 * cols, 1,
              [&](int64_t r0, int64_t r1) { k.softmax(x + r0 * cols, o + r0 * cols, r1 - r0, cols); });
  return nullptr;
}

// ---------------------------------------------------------------------------------------------------
// Transpose

// transpose(x, shape, perm, out): out has shape shape[perm[i]].
napi_value transpose(napi_env env, napi_callback_info info) {
  const char* fn = "transpose";
  napi_value argv[4];
  if (!getArgs(env, info, 4, argv, fn)) return nullptr;
  float *x, *o;
  size_t lx, lo;
  std::vector<int64_t> shape, perm;
  if (!getTyped(env, argv[0], &x, &lx, fn, "x") || !getInts(env, argv[1], &shape, fn, "shape") ||
      !getInts(env, argv[2], &perm, fn, "perm") || !getTyped(env, argv[3], &o, &lo, fn, "out") ||
      !checkLength(env, lx, sizeOf(shape), fn, "x") || !checkLength(env, lo, sizeOf(shape), fn, "out")) {
    return nullptr;
  }
  const int r = static_cast<int>(shape.size());
  if (static_cast<int>(perm.size()) != r) return throwRange(env, "transpose: perm and shape differ in length");
  bool seen[kMaxRank] = {false};
  for (int i = 0; i < r; i++) {
    if (perm[i] >= r || seen[perm[i]]) return throwRange(env, "transpose: perm is not a permutation");
    seen[perm[i]] = true;
  }
  if (lx == 0) return nullptr;
  int64_t inStride[kMaxRank];
  int64_t c = 1;
  for (int i = r - 1; i >= 0; i--) {
    inStride[i] = c;
    c *= shape[i];
  }
  // Output dims with their input strides; size-1 dims dropped, runs that stay contiguous merged.
  int64_t dims[kMaxRank + 2], st[kMaxRank + 2];
  int k = 0;
  for (int i = 0; i < r; i++) {
    const int64_t d = shape[perm[i]];
    const int64_t s = inStride[perm[i]];
    if (d == 1) continue;
    if (k > 0 && st[k - 1] == s * d) {
      dims[k - 1] *= d;
      st[k - 1] = s;
      continue;
    }
    dims[k] = d;
    st[k] = s;
    k++;
  }
  // Pad to at least two dims so the tiled 2-D walk below covers every case.
  while (k < 2) {
    for (int i = k; i > 0; i--) {
      dims[i] = dims[i - 1];
      st[i] = st[i - 1];
    }
    dims[0] = 1;
    st[0] = 0;
    k++;
  }
  const int64_t rowsN = dims[k - 2], colsN = dims[k - 1];
  const int64_t sr = st[k - 2], sc = st[k - 1];
  int64_t outer = 1;
  for (int i = 0; i < k - 2; i++) outer *= dims[i];
  const int64_t T = 32;
  // Rows [i0, i1) of the 2-D block t, read from x + base.
  const auto block = [&](int64_t t, int64_t base, int64_t i0, int64_t i1) {
    float* ob = o + t * rowsN * colsN;
    if (sc == 1) {
      for (int64_t i = i0; i < i1; i++) std::memcpy(ob + i * colsN, x + base + i * sr, colsN * sizeof(float));
      return;
    }
    // Tiles keep the strided reads inside cache lines already loaded.
    for (int64_t r0 = i0; r0 < i1; r0 += T) {
      const int64_t r1 = r0 + T < i1 ? r0 + T : i1;
      for (int64_t j0 = 0; j0 < colsN; j0 += T) {
        const int64_t j1 = j0 + T < colsN ? j0 + T : colsN;
        for (int64_t i = r0; i < r1; i++) {
          const float* src = x + base + i * sr;
          float* dst = ob + i * colsN;
          for (int64_t j = j0; j < j1; j++) dst[j] = src[j * sc];
        }
      }
    }
  };
  if (outer == 1) {
    parallelFor(rowsN, 2 * colsN, T, [&](int64_t i0, int64_t i1) { block(0, 0, i0, i1); });
    return nullptr;
  }
  parallelFor(outer, 2 * rowsN * colsN, 1, [&](int64_t t0, int64_t t1) {
    // The odometer over the outer dims, started at block t0.
    int64_t idx[kMaxRank + 2] = {0};
    int64_t base = 0;
    int64_t rem = t0;
    for (int d = k - 3; d >= 0; d--) {
      idx[d] = rem % dims[d];
      rem /= dims[d];
      base += idx[d] * st[d];
    }
    for (int64_t t = t0; t < t1; t++) {
      block(t, base, 0, rowsN);
      for (int d = k - 3; d >= 0; d--) {
        idx[d]++;
        base += st[d];
        if (idx[d] < dims[d]) break;
        base -= st[d] * dims[d];
        idx[d] = 0;
      }
    }
  });
  return nullptr;
}

// ---------------------------------------------------------------------------------------------------
// Reductions of x viewed as [outer, reduce, inner] over the middle axis; sums accumulate in double.

// reduce(op, x, outer, reduce, inner, out)
napi_value reduce(napi_env env, napi_callback_info info) {
  const char* fn = "reduce";
  napi_value argv[6];
  if (!getArgs(env, info, 6, argv, fn)) return nullptr;
  std::string op;
  float *x, *o;
  size_t lx, lo;
  int64_t A, R, B;
  if (!getString(env, argv[0], &op, fn, "op") || !getTyped(env, argv[1], &x, &lx, fn, "x") ||
      !getDim(env, argv[2], int64_t{1} << 40, &A, fn, "outer") ||
      !getDim(env, argv[3], int64_t{1} << 40, &R, fn, "reduce") ||
      !getDim(env, argv[4], int64_t{1} << 40, &B, fn, "inner") || !getTyped(env, argv[5], &o, &lo, fn, "out") ||
      !checkLength(env, lx, mulOrNeg(A, R, B), fn, "x") || !checkLength(env, lo, mulOrNeg(A, B), fn, "out")) {
    return nullptr;
  }
  const bool isSum = op == "sum", isMean = op == "mean", isMax = op == "max", isMin = op == "min";
  if (!isSum && !isMean && !isMax && !isMin) return throwRange(env, "reduce: unknown op " + op);
  if ((isMax || isMin) && R == 0) return throwRange(env, "reduce: max/min over an empty axis");
  const double scale = isMean ? 1.0 / static_cast<double>(R) : 1.0;
  // Outer blocks a [a0, a1), inner columns [b0, b1): each output's sum runs over r in order, whatever the split.
  // An allocation failure on a helper thread must come back to the caller as a JS error, not a terminate.
  std::atomic<bool> outOfMemory{false};
  const auto run = [&](int64_t a0, int64_t a1, int64_t b0, int64_t b1) {
    const int64_t nb = b1 - b0;
    std::vector<double> acc;
    std::vector<float> ext;
    std::vector<unsigned char> nan;
    try {
      acc.resize(isSum || isMean ? nb : 0);
      ext.resize(isMax || isMin ? nb : 0);
      nan.resize(isMax || isMin ? nb : 0);
    } catch (const std::bad_alloc&) {
      outOfMemory = true;
      return;
    }
    for (int64_t a = a0; a < a1; a++) {
      const float* xa = x + a * R * B + b0;
      float* oa = o + a * B + b0;
      if (isSum || isMean) {
        if (B == 1) {
          double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
          int64_t r = 0;
          for (; r + 3 < R; r += 4) {
            s0 += xa[r];
            s1 += xa[r + 1];
            s2 += xa[r + 2];
            s3 += xa[r + 3];
          }
          for (; r < R; r++) s0 += xa[r];
          oa[0] = static_cast<float>(((s0 + s1) + (s2 + s3)) * scale);
          continue;
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t r = 0; r < R; r++) {
          const float* row = xa + r * B;
          for (int64_t b = 0; b < nb; b++) acc[b] += row[b];
        }
        for (int64_t b = 0; b < nb; b++) oa[b] = static_cast<float>(acc[b] * scale);
      } else {
        // NaN wins, as Math.max/Math.min in the cpu kernels.
        std::memcpy(ext.data(), xa, nb * sizeof(float));
        std::fill(nan.begin(), nan.end(), 0);
        for (int64_t r = 0; r < R; r++) {
          const float* row = xa + r * B;
          for (int64_t b = 0; b < nb; b++) {
            const float v = row[b];
            nan[b] |= v != v;
            ext[b] = isMax ? (v > ext[b] ? v : ext[b]) : (v < ext[b] ? v : ext[b]);
          }
        }
        for (int64_t b = 0; b < nb; b++) oa[b] = nan[b] ? __builtin_nanf("") : ext[b];
      }
    }
  };
  // By outer blocks when there are enough of them, else by inner columns (a column sum over rows).
  if (A >= poolThreads() || B < 2 * kAlign) {
    parallelFor(A, mulOrNeg(R, B) + B, 1, [&](int64_t a0, int64_t a1) { run(a0, a1, 0, B); });
  } else {
    for (int64_t a = 0; a < A; a++) {
      parallelFor(B, R + 1, kAlign, [&](int64_t b0, int64_t b1) { run(a, a + 1, b0, b1); });
    }
  }
  if (outOfMemory) return throwError(env, "reduce: out of memory");
  return nullptr;
}

}  // namespace

void registerElementwise(napi_env env, napi_value exports) {
  exportFunction(env, exports, "binary", binary);
  exportFunction(env, exports, "addN", addN);
  exportFunction(env, exports, "sumF64", sumF64);
  exportFunction(env, exports, "unary", unary);
  exportFunction(env, exports, "softmax", softmax);
  exportFunction(env, exports, "transpose", transpose);
  exportFunction(env, exports, "reduce", reduce);
}

}  // namespace inflora
