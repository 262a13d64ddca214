// Branch-free float32 exp for loops the compiler vectorises (libm's expf is a call per element). Cephes'
// expf: x = n·ln2 + r, |r| ≤ ln2/2, degree-6 polynomial; within 2 ulp of the correctly rounded value over
// the normal range, subnormal results via a two-step scale, ±inf and NaN as expf gives them.
#pragma once

#include <cstdint>
#include <cstring>

namespace inflora {

inline float bitsToFloat(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

inline float fastExp(float x) {
  const float hi = 88.72283935546875f;  // expf overflows above this
  const float lo = -103.97208404541016f;  // expf is 0 below this
  float xc = x > hi ? hi : x;
  xc = xc < lo ? lo : xc;
  // Round to nearest by adding and removing 1.5·2^23 (vectorises; floorf is a libm call without SSE4.1).
  const float shifter = 12582912.0f;
  const float n = (xc * 1.44269504088896341f + shifter) - shifter;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r2 + r + 1.0f;
  // 2^n in two factors, so n down to −150 (subnormal results) never builds an invalid exponent.
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t n1 = ni / 2;
  const int32_t n2 = ni - n1;
  float result = y * bitsToFloat((n1 + 127) << 23) * bitsToFloat((n2 + 127) << 23);
  result = x > hi ? __builtin_inff() : result;
  result = x < lo ? 0.0f : result;
  return x != x ? x : result;
}

// tfjs's erf (Abramowitz–Stegun 7.1.26, the constants of tfjs-core's erf_util), as its cpu backend
// computes it.
inline float tfjsErf(float x) {
  const float p = 0.3275911f, a1 = 0.254829592f, a2 = -0.284496736f, a3 = 1.421413741f, a4 = -1.453152027f,
              a5 = 1.061405429f;
  const float v = __builtin_fabsf(x);
  const float t = 1.0f / (1.0f + p * v);
  const float y = 1.0f - (((((a5 * t + a4) * t) + a3) * t + a2) * t + a1) * t * fastExp(-v * v);
  // sign(x)·y with sign(±0) = 0 and NaN passed through, as Math.sign gives them.
  const float signed_ = __builtin_copysignf(y, x);
  return x == 0.0f || x != x ? x : signed_;
}

}  // namespace inflora
