// The per-element arithmetic of the recurrent cells (shared/MODEL.md), for
// the device kernels (worker/device_kernels.h). Every function is
// __host__ __device__ under nvcc and plain inline C++ elsewhere, so the CPU
// tests run exactly this code and compare it with the CPU kernels.
//
// Only <cmath>, <cstdint> and <cstring>: nvcc compiles this without LibTorch.
#ifndef ABLATE_WORKER_CELL_MATH_H_
#define ABLATE_WORKER_CELL_MATH_H_

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define ABLATE_HD __host__ __device__
#else
#define ABLATE_HD
#endif

namespace ablate {
namespace cell {

// Epsilon of every layer norm (recurrence.h's kLayerNormEps).
inline constexpr float kLayerNormEps = 1e-5f;

ABLATE_HD inline float Sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
ABLATE_HD inline float Tanh(float x) { return tanhf(x); }

// d sigmoid / dx in terms of its output s, and d tanh / dx in terms of t.
ABLATE_HD inline float SigmoidSlope(float s) { return s * (1.0f - s); }
ABLATE_HD inline float TanhSlope(float t) { return 1.0f - t * t; }

// 1 / std of a row given the sum of its squared deviations from the mean.
ABLATE_HD inline float LayerNormRstd(float squared_deviations, int64_t n) {
  return 1.0f / sqrtf(squared_deviations / float(n) + kLayerNormEps);
}

// What a pre-activation adds from its h-projection z: gain * xhat + shift
// with layer norm (xhat the normalised z), z itself without.
ABLATE_HD inline float Projection(bool layer_norm, float z, float xhat, float gain, float shift) {
  return layer_norm ? xhat * gain + shift : z;
}

// Layer norm backward for one element: the gradient of its input, given dn
// (the gradient of gain * xhat + shift), and the row means of dn * gain and
// of dn * gain * xhat.
ABLATE_HD inline float LayerNormInputGrad(float dn, float gain, float xhat, float rstd,
                                          float mean_dx, float mean_dx_xhat) {
  return rstd * (dn * gain - mean_dx - xhat * mean_dx_xhat);
}

// GRU and MGU: h' = h + u * (c - h), the gradients of h' wrt u, c's
// pre-activation and h (the direct path only).
ABLATE_HD inline float GatedUpdate(float h, float u, float c) { return h + u * (c - h); }
ABLATE_HD inline float GatedUpdateGradU(float d, float h, float c) { return d * (c - h); }
ABLATE_HD inline float GatedUpdateGradCandidate(float d, float u, float c) {
  return d * u * TanhSlope(c);
}
ABLATE_HD inline float GatedUpdateGradH(float d, float u) { return d * (1.0f - u); }

// LSTM: c' = sf * c + si * tg and h' = so * tc, where tc = tanh(LN(c')).
ABLATE_HD inline float LstmCell(float sf, float c, float si, float tg) { return sf * c + si * tg; }

// bfloat16 as its 16 bits: round to nearest, ties to even; NaN stays a
// (quiet) NaN. The same rounding as __float2bfloat16_rn and c10::BFloat16.
ABLATE_HD inline uint16_t FloatToBf16Bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

ABLATE_HD inline float Bf16BitsToFloat(uint16_t bits) {
  const uint32_t u = uint32_t(bits) << 16;
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

}  // namespace cell
}  // namespace ablate

#endif  // ABLATE_WORKER_CELL_MATH_H_
