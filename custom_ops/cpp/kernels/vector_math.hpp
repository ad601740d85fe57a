// Small arithmetic the attention and expert kernels share, written so that GCC vectorises the
// loops that call it; the attribute that compiles a hot loop twice (FMA, and the portable
// baseline), the CPU choosing at load time; and, for a compute-bound loop that is worth a third
// version, the AVX-512 attribute with its run-time test (the caller picks).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__GNUC__) && defined(__x86_64__)
#define I2F_HOT_LOOP __attribute__((target_clones("fma", "default")))
#define I2F_AVX512_LOOP __attribute__((target("avx512f,fma")))
#define I2F_HAS_AVX512_LOOP 1
#else
#define I2F_HOT_LOOP
#define I2F_HAS_AVX512_LOOP 0
#endif

namespace i2f {

// (inlined everywhere: no vector crosses a call, so the ABI note on 32-byte vectors is moot)
#pragma GCC diagnostic ignored "-Wpsabi"

// exp(r) for r in [-ln2/2, ln2/2], degree 6 by Horner's rule, on a float or eight at once;
// ``first`` is the leading coefficient 1/720 in r's type
template <typename T>
__attribute__((always_inline)) inline T exp_polynomial(T r, T first) {
    T p = first;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    return p * r + 1.0f;
}

// exp(x) for x <= 0 (softmax after subtracting the maximum), relative error below 2e-7: 2^n by
// the exponent bits times a degree-6 polynomial of exp on [-ln2/2, ln2/2]; 0 below -87.
__attribute__((always_inline)) inline float exp_nonpositive(float x) {
    const float clamped = x < -87.0f ? -87.0f : x;
    const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
    const float n = (clamped * 1.44269504f + shifter) - shifter;
    const float r = clamped - n * 0.693145752f - n * 1.42860677e-6f;  // ln2 in two parts
    const float p = exp_polynomial(r, 1.0f / 720);
    const std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return x < -87.0f ? 0.0f : p * scale;
}

// 1 / (1 + exp(-x)) and x * sigmoid(x), for any finite x.
__attribute__((always_inline)) inline float sigmoid(float x) {
    const float e = exp_nonpositive(x < 0 ? x : -x);  // exp(-|x|)
    return x < 0 ? e / (1.0f + e) : 1.0f / (1.0f + e);
}

// Eight floats, as GCC lowers them on the target it compiles for (two SSE registers, or one AVX).
typedef float Floats8 __attribute__((vector_size(32)));
typedef std::int32_t Ints8 __attribute__((vector_size(32)));
constexpr std::int64_t kLanes = 8;

// Sixteen floats: one AVX-512 register (in an I2F_AVX512_LOOP function), else two or four.
typedef float Floats16 __attribute__((vector_size(64)));
typedef std::int32_t Ints16 __attribute__((vector_size(64)));

// Whether I2F_AVX512_LOOP functions run: the CPU has AVX-512, and I2F_NATIVE_PORTABLE is not
// set in the environment (the tests set it to run the portable clones on an AVX-512 machine).
inline bool cpu_has_avx512() {
#if I2F_HAS_AVX512_LOOP
    static const bool has =
        __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma") && std::getenv("I2F_NATIVE_PORTABLE") == nullptr;
    return has;
#else
    return false;
#endif
}

// Loads and stores of a vector type V (Floats8 or Floats16) from unaligned floats.
template <typename V>
__attribute__((always_inline)) inline V load_vector(const float* from) {
    V value;
    std::memcpy(&value, from, sizeof value);
    return value;
}

template <typename V>
__attribute__((always_inline)) inline void store_vector(float* to, V value) {
    std::memcpy(to, &value, sizeof value);
}

__attribute__((always_inline)) inline Floats8 load8(const float* from) {
    Floats8 value;
    std::memcpy(&value, from, sizeof value);
    return value;
}

__attribute__((always_inline)) inline void store8(float* to, Floats8 value) {
    std::memcpy(to, &value, sizeof value);
}

__attribute__((always_inline)) inline Floats8 splat8(float value) {
    return Floats8{value, value, value, value, value, value, value, value};
}

__attribute__((always_inline)) inline float sum8(Floats8 value) {
    return ((value[0] + value[1]) + (value[2] + value[3])) + ((value[4] + value[5]) + (value[6] + value[7]));
}

// The sixteen lanes added pairwise (the same order whatever the vector registers' width).
__attribute__((always_inline)) inline float sum16(Floats16 value) {
    Floats8 low, high;
    std::memcpy(&low, &value, sizeof low);
    std::memcpy(&high, reinterpret_cast<const char*>(&value) + sizeof low, sizeof high);
    return sum8(low + high);
}

// exp_nonpositive on a vector V of floats at once (the same arithmetic); I: int32 lanes of V's width.
template <typename V, typename I>
__attribute__((always_inline)) inline V exp_nonpositive_vector(V x) {
    const V low = V{} - 87.0f;
    const V clamped = x < low ? low : x;
    const V shifter = V{} + 12582912.0f;
    const V n = (clamped * 1.44269504f + shifter) - shifter;
    const V r = clamped - n * 0.693145752f - n * 1.42860677e-6f;
    const V p = exp_polynomial(r, V{} + 1.0f / 720);
    const I bits = (__builtin_convertvector(n, I) + 127) << 23;
    V scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return x < low ? V{} : p * scale;
}

__attribute__((always_inline)) inline Floats8 exp_nonpositive8(Floats8 x) {
    return exp_nonpositive_vector<Floats8, Ints8>(x);
}

// x * sigmoid(x) * u on a vector V of floats (SwiGLU's product), by the same exp; I: int32 lanes of V's width.
template <typename V, typename I>
__attribute__((always_inline)) inline V swiglu_vector(V x, V u) {
    const V zero = V{}, one = V{} + 1.0f;
    const V e = exp_nonpositive_vector<V, I>(x < zero ? x : -x);  // exp(-|x|)
    const V sigmoid = (x < zero ? e : one) / (one + e);  // one division: the two cases' quotients as before
    return x * sigmoid * u;
}

}  // namespace i2f
