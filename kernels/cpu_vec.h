// Helpers for the CPU loops of the fused kernels (RMSNorm, RoPE, SwiGLU, log-prob rows). The
// build targets plain x86-64, so ATen's vectorised kernels are out of reach of our own code;
// instead each loop is written over raw float pointers in a form the compiler vectorises, and
// run_isa() runs it compiled for AVX2+FMA when the CPU has them (checked once), else as built.
// The loops keep to what vectorises without -ffast-math: no float compares or selects (bit
// operations instead), no libm calls, reductions spread over a fixed number of partial sums.
// Only kernels/*.cpp include this.
#pragma once

#include <climits>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define POSTTRAIN_CPU_AVX2_DISPATCH 1
#endif

namespace posttrain::kernels::cpu {

// Whether run_isa may take the AVX2 path (tests turn it off to check the baseline build too).
inline bool& avx2_allowed() {
  static bool allowed = true;
  return allowed;
}

inline bool use_avx2() {
#ifdef POSTTRAIN_CPU_AVX2_DISPATCH
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has && avx2_allowed();
#else
  return false;
#endif
}

#ifdef POSTTRAIN_CPU_AVX2_DISPATCH
// `flatten` inlines fn's body into this AVX2+FMA function, so its loops are vectorised for it.
template <class Fn>
__attribute__((target("avx2,fma"), flatten)) void run_avx2(const Fn& fn) {
  fn();
}
#endif

// Runs fn() (a loop over raw pointers, with no calls that cannot be inlined) with the widest
// vector ISA this CPU has.
template <class Fn>
void run_isa(const Fn& fn) {
#ifdef POSTTRAIN_CPU_AVX2_DISPATCH
  if (use_avx2()) {
    run_avx2(fn);
    return;
  }
#endif
  fn();
}

inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// exp(-a) for a in [0, 87] (callers clamp): a = n ln2 + r with n integral and |r| <= ln2 / 2,
// exp(r) by a degree-7 polynomial (Cephes' expf coefficients), 2^n built in the exponent bits.
// Relative error under 1e-7.
inline float exp_neg(float a) {
  const float x = -a;
  const float shift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
  const float t = x * 1.44269504088896341f + shift;
  const float n = t - shift;                                 // round(x / ln2), in [-126, 0]
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;  // ln2 in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t e = static_cast<int32_t>(bits_of(t) - bits_of(shift)) + 127;
  return p * float_of(static_cast<uint32_t>(e) << 23);
}

// exp(-a) for a >= 0 of any size: a is clamped to 87 first (exp(-87) < 2e-38 stands in for
// anything smaller; a NaN also reads as 87).
inline float exp_neg_clamped(float a) {
  uint32_t ab = bits_of(a) & 0x7fffffffu;
  ab = ab < 0x42ae0000u ? ab : 0x42ae0000u;
  return exp_neg(float_of(ab));
}

// A float's bits as an int32 that orders like the float (for vectorisable max reductions:
// integer max needs no float compare); order_key(order_key(x)) gives x's bits back. NaN orders
// above +inf (a positive NaN) or below -inf.
inline int32_t order_key(uint32_t b) {
  const int32_t i = static_cast<int32_t>(b);
  return i ^ ((i >> 31) & 0x7fffffff);
}

// The largest of x[0..n) (n >= 1): a max over order_key()s in 16 lanes, which vectorises. Call
// it inside run_isa()'s function so it is compiled for the ISA in use.
inline float max_of(const float* x, int64_t n) {
  constexpr int64_t kLanes = 16;
  const uint32_t* __restrict xb = reinterpret_cast<const uint32_t*>(x);
  int32_t km[kLanes];
  for (int64_t l = 0; l < kLanes; ++l) km[l] = INT32_MIN;
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) {
      const int32_t key = order_key(xb[j + l]);
      km[l] = key > km[l] ? key : km[l];
    }
  }
  int32_t best = INT32_MIN;
  for (int64_t l = 0; l < kLanes; ++l) best = km[l] > best ? km[l] : best;
  for (; j < n; ++j) {
    const int32_t key = order_key(xb[j]);
    best = key > best ? key : best;
  }
  return float_of(static_cast<uint32_t>(order_key(static_cast<uint32_t>(best))));
}

// The logistic function 1 / (1 + exp(-x)), from exp(-|x|) so nothing overflows; |x| is clamped
// to 87 (where the result is already 1 or below 1e-37). A NaN input gives a finite value; the
// callers multiply by x, so NaN still propagates.
inline float sigmoid(float x) {
  const uint32_t xb = bits_of(x);
  const float e = exp_neg_clamped(float_of(xb & 0x7fffffffu));  // exp(-|x|) in (0, 1]
  const float pos = 1.0f / (1.0f + e);                          // sigmoid(|x|)
  const float neg = e * pos;                                    // sigmoid(-|x|)
  const uint32_t m = static_cast<uint32_t>(static_cast<int32_t>(xb) >> 31);  // ~0 if x < 0
  return float_of((bits_of(pos) & ~m) | (bits_of(neg) & m));
}

}  // namespace posttrain::kernels::cpu
