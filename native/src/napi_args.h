// Argument checking for the addon's N-API functions. Every helper throws a JS error and returns false
// on bad input, so a caller just returns nullptr; nothing here may crash the process.
#pragma once

#include <node_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace inflora {

inline napi_value throwRange(napi_env env, const std::string& msg) {
  napi_throw_range_error(env, nullptr, msg.c_str());
  return nullptr;
}

inline napi_value throwType(napi_env env, const std::string& msg) {
  napi_throw_type_error(env, nullptr, msg.c_str());
  return nullptr;
}

inline napi_value throwError(napi_env env, const std::string& msg) {
  napi_throw_error(env, nullptr, msg.c_str());
  return nullptr;
}

// Reads exactly `expected` arguments.
inline bool getArgs(napi_env env, napi_callback_info info, size_t expected, napi_value* argv,
                    const char* fn) {
  size_t argc = expected;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) {
    throwError(env, std::string(fn) + ": cannot read arguments");
    return false;
  }
  if (argc != expected) {
    throwType(env, std::string(fn) + ": expected " + std::to_string(expected) + " arguments, got " +
                       std::to_string(argc));
    return false;
  }
  return true;
}

template <typename T>
struct TypedArrayKind;
template <>
struct TypedArrayKind<float> {
  static constexpr napi_typedarray_type type = napi_float32_array;
  static constexpr const char* name = "Float32Array";
};
template <>
struct TypedArrayKind<double> {
  static constexpr napi_typedarray_type type = napi_float64_array;
  static constexpr const char* name = "Float64Array";
};

// A typed array of element type T; `length` is its element count.
template <typename T>
bool getTyped(napi_env env, napi_value v, T** data, size_t* length, const char* fn, const char* what) {
  bool is = false;
  napi_is_typedarray(env, v, &is);
  napi_typedarray_type type;
  void* ptr = nullptr;
  if (!is || napi_get_typedarray_info(env, v, &type, length, &ptr, nullptr, nullptr) != napi_ok ||
      type != TypedArrayKind<T>::type) {
    throwType(env, std::string(fn) + ": " + what + " must be a " + TypedArrayKind<T>::name);
    return false;
  }
  *data = static_cast<T*>(ptr);
  return true;
}

// A non-negative integer no larger than `max` (BLAS/LAPACK take 32-bit ints).
inline bool getDim(napi_env env, napi_value v, int64_t max, int64_t* out, const char* fn, const char* what) {
  double d = 0;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0) || d > static_cast<double>(max) ||
      d != static_cast<double>(static_cast<int64_t>(d))) {
    throwRange(env, std::string(fn) + ": " + what + " must be an integer in [0, " + std::to_string(max) + "]");
    return false;
  }
  *out = static_cast<int64_t>(d);
  return true;
}

inline bool getBool(napi_env env, napi_value v, bool* out, const char* fn, const char* what) {
  if (napi_get_value_bool(env, v, out) != napi_ok) {
    throwType(env, std::string(fn) + ": " + what + " must be a boolean");
    return false;
  }
  return true;
}

// Checks that a typed array holds exactly `expected` elements.
inline bool checkLength(napi_env env, size_t actual, int64_t expected, const char* fn, const char* what) {
  if (static_cast<int64_t>(actual) != expected) {
    throwRange(env, std::string(fn) + ": " + what + " has " + std::to_string(actual) + " elements, expected " +
                        std::to_string(expected));
    return false;
  }
  return true;
}

// A new Float64Array of `n` elements; `data` points at its storage.
inline napi_value newFloat64(napi_env env, size_t n, double** data) {
  napi_value buf;
  void* raw = nullptr;
  if (napi_create_arraybuffer(env, n * sizeof(double), &raw, &buf) != napi_ok) {
    return throwError(env, "cannot allocate " + std::to_string(n) + " doubles");
  }
  napi_value arr;
  if (napi_create_typedarray(env, napi_float64_array, n, buf, 0, &arr) != napi_ok) {
    return throwError(env, "cannot create a Float64Array");
  }
  *data = static_cast<double*>(raw);
  return arr;
}

inline void setProp(napi_env env, napi_value obj, const char* key, napi_value value) {
  napi_set_named_property(env, obj, key, value);
}

constexpr int64_t kMaxInt = 2147483647;

// a·b, or −1 when it overflows int64 (no typed array has that many elements, so length checks then fail).
inline int64_t mulOrNeg(int64_t a, int64_t b) {
  int64_t out;
  return __builtin_mul_overflow(a, b, &out) ? -1 : out;
}

inline int64_t mulOrNeg(int64_t a, int64_t b, int64_t c) {
  const int64_t ab = mulOrNeg(a, b);
  return ab < 0 ? -1 : mulOrNeg(ab, c);
}

}  // namespace inflora
