// The selective SSM's decoding step for the `native` backend (Mamba, Gu & Dao 2023, Algorithm 2
// at one position), and the vectorisable exp its decays use. A header, so that the scan
// (selective_scan.cpp) and the fused block step (mamba_step.cpp) share them.

#pragma once

#include <omp.h>

#include <bit>
#include <cmath>
#include <cstdint>

namespace longssm {

// exp for the decays. float: Cephes' expf polynomial (max error ~2 ulp on the range used), written
// branch-free so a loop over lanes vectorises; arguments below -87 give exp(-87) = 1.6e-38, not 0.
// double (the checking dtype): std::exp.
template <typename S>
inline S lane_exp(S x) { return std::exp(x); }

template <>
inline float lane_exp<float>(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  float fx = std::floor(x * 1.44269504088896341f + 0.5f);
  x = x - fx * 0.693359375f + fx * 2.12194440e-4f;
  float z = x * x;
  float p = ((((1.9875691500e-4f * x + 1.3981999507e-3f) * x + 8.3334519073e-3f) * x + 4.1665795894e-2f) * x +
             1.6666665459e-1f) * x + 5.0000001201e-1f;
  p = p * z + x + 1.0f;
  return std::bit_cast<float>(std::bit_cast<int32_t>(p) + (static_cast<int32_t>(fx) << 23));
}

// silu(v) = v sigmoid(v), with the vectorisable exp: the gate of the decoding steps.
template <typename S>
inline S silu(S v) { return v / (S(1) + lane_exp(-v)); }

// One decoding step: the selective scan's recurrence at a single position, fused with the skip D u and the
// gate silu(z) (the caller applies the softplus of delta, as for the scan), so a token costs one
// call per layer instead of about twenty small ops:
//   x1 = exp(delta A) x0 + delta u B,   y = (C . x1 + D u) * silu(z).
// u, delta, z, y (batch, D); B, C (batch, N); A (D, N); Dk (D); x0, x1 (batch, D, N); all
// contiguous. Dk, z and x0 may be null (x0 null: the zero state). One thread below 4K state
// elements, where a parallel region costs more than it saves (a batch-1 step of a 130M model has
// 25K: 25 us on 2 threads against 35 us on one, measured).
template <typename S>
void scan_step(int64_t batch, int64_t D, int64_t N, const S* u, const S* delta, const S* A, const S* Bm,
               const S* Cm, const S* Dk, const S* z, const S* x0, S* x1, S* y, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (batch * D * N >= (1 << 12))
  for (int64_t r = 0; r < batch * D; ++r) {
    const int64_t b = r / D, d = r % D;
    const S dl = delta[r], du = dl * u[r];
    const S *a = A + d * N, *bk = Bm + b * N, *ck = Cm + b * N;
    S* xn = x1 + r * N;
    S acc = S(0);
    if (x0) {
      const S* xp = x0 + r * N;
#pragma omp simd reduction(+ : acc)
      for (int64_t k = 0; k < N; ++k) {
        xn[k] = lane_exp(dl * a[k]) * xp[k] + du * bk[k];
        acc += xn[k] * ck[k];
      }
    } else {
#pragma omp simd reduction(+ : acc)
      for (int64_t k = 0; k < N; ++k) {
        xn[k] = du * bk[k];
        acc += xn[k] * ck[k];
      }
    }
    if (Dk) acc += Dk[d] * u[r];
    if (z) acc *= silu(z[r]);
    y[r] = acc;
  }
}

}  // namespace longssm
