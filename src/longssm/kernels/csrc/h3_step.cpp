// The H3 layer's decoding step as one call (Fu, Dao et al. 2023, section 3.2, Algorithm 1 at one
// position, one channel per head): the `native` backend's H3.step on CPU.
//
//   q, k, v = in_proj(x)                                  (batch, d) each
//   w1 = [k, w0[:-1]];  k' = K . w1 + Ds k                 the shift SSM: a window of recent k
//   s1 = dA s0 + dB (k' v);  y = Re(C . s1) + Dd (k' v)     the diagonal SSM, complex modes
//   out = out_proj(q y)
//
// Composed in Python the same step is about twenty small PyTorch ops (complex ones among them)
// and two ctypes calls per layer (BENCHMARKS.md); at batch 1 the step is bound by reading the
// projections' weights, which gemv.h streams at the machine's read rate.
//
// Shapes (elements, contiguous): x, out (batch, d); W_in (3d, d), b_in (3d), rows q, k, v;
// K (d, S), the shift SSM's kernel; Ds, Dd, b_out (d); w0, w1 (batch, d, S), newest first;
// dA, dB, C (d, N) complex and s0, s1 (batch, d, N) complex, as (re, im) pairs (C already doubled
// for the conjugate modes); W_out (d, d). w0 and s0 may be null (zero states).
// dims = {batch, d, S, N}.

#include <omp.h>

#include <cstdint>
#include <vector>

#include "gemv.h"

namespace {

using longssm::gemv;

template <typename S>
void h3_step(const int64_t* dims, const S* x, const S* W_in, const S* b_in, const S* K, const S* Ds, const S* w0,
             const S* dA, const S* dB, const S* C, const S* Dd, const S* s0, const S* W_out, const S* b_out, S* w1,
             S* s1, S* out, int threads) {
  const int64_t batch = dims[0], d = dims[1], Sw = dims[2], N = dims[3];
  std::vector<S> qkv(batch * 3 * d), y(batch * d);
  gemv(W_in, x, d, b_in, qkv.data(), batch, 3 * d, d, threads);
#pragma omp parallel for num_threads(threads) schedule(static) if (batch * d * (Sw + 8 * N) >= (1 << 16))
  for (int64_t r = 0; r < batch * d; ++r) {
    const int64_t b = r / d, c = r % d;
    const S q = qkv[b * 3 * d + c], k = qkv[b * 3 * d + d + c], v = qkv[b * 3 * d + 2 * d + c];
    const S *kc = K + c * Sw, *wp = w0 ? w0 + r * Sw : nullptr;
    S* wn = w1 + r * Sw;
    wn[0] = k;
    for (int64_t j = 1; j < Sw; ++j) wn[j] = wp ? wp[j - 1] : S(0);
    S ks = 0;
#pragma omp simd reduction(+ : ks)
    for (int64_t j = 0; j < Sw; ++j) ks += wn[j] * kc[j];
    const S u = (ks + Ds[c] * k) * v;
    const S *a = dA + 2 * c * N, *bb = dB + 2 * c * N, *cc = C + 2 * c * N, *sp = s0 ? s0 + 2 * r * N : nullptr;
    S* sn = s1 + 2 * r * N;
    S acc = 0;
    for (int64_t n = 0; n < N; ++n) {
      const S pr = sp ? sp[2 * n] : S(0), pi = sp ? sp[2 * n + 1] : S(0);
      const S re = a[2 * n] * pr - a[2 * n + 1] * pi + bb[2 * n] * u;
      const S im = a[2 * n] * pi + a[2 * n + 1] * pr + bb[2 * n + 1] * u;
      sn[2 * n] = re;
      sn[2 * n + 1] = im;
      acc += cc[2 * n] * re - cc[2 * n + 1] * im;
    }
    y[r] = (acc + Dd[c] * u) * q;
  }
  gemv(W_out, y.data(), d, b_out, out, batch, d, d, threads);
}

}  // namespace

#define LONGSSM_H3_STEP_ENTRY(S, suffix)                                                                             \
  extern "C" void longssm_h3_step_##suffix(const int64_t* dims, const S* x, const S* W_in, const S* b_in,          \
                                           const S* K, const S* Ds, const S* w0, const S* dA, const S* dB,         \
                                           const S* C, const S* Dd, const S* s0, const S* W_out, const S* b_out,   \
                                           S* w1, S* s1, S* out, int threads) {                                    \
    h3_step<S>(dims, x, W_in, b_in, K, Ds, w0, dA, dB, C, Dd, s0, W_out, b_out, w1, s1, out, threads);             \
  }

LONGSSM_H3_STEP_ENTRY(float, f32)
LONGSSM_H3_STEP_ENTRY(double, f64)
