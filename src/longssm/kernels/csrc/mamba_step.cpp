// The Mamba block's decoding step as one call (Gu & Dao 2023, section 3.4 and Algorithm 2 at one
// position): the `native` backend's SelectiveSSM.step on CPU.
//
//   x, z = in_proj(u)                                   (batch, d_inner) each
//   x = silu(conv_w . [conv0, x] + conv_b)               the causal depthwise conv's last output
//   dt, B, C = x_proj(x);  delta = softplus(dt_proj(dt) + dt_bias)
//   x1 = exp(delta A) x0 + delta x B;  y = (C . x1 + D x) * silu(z)
//   out = out_proj(y)
//
// At batch 1 a step is bound by reading the weights (gemv.h streams them at the machine's read
// rate); composed in Python the same step is about twenty small PyTorch ops and four ctypes calls
// per layer, which cost more than the block's own work (BENCHMARKS.md). Here it is one call.
//
// Shapes (elements, all contiguous): u, out (batch, d_model); W_in (2 d_inner, d_model);
// conv_w (d_inner, d_conv); conv_b, dt_b, Dk (d_inner); conv0, conv1 (batch, d_inner, d_conv - 1);
// W_x (dt_rank + 2 N, d_inner); W_dt (d_inner, dt_rank); A (d_inner, N) = -exp(A_log);
// x0, x1 (batch, d_inner, N); W_out (d_model, d_inner). conv_b, Dk and x0 may be null (x0: the
// zero state). dims = {batch, d_model, d_inner, d_conv, dt_rank, N}.

#include <cmath>
#include <cstdint>
#include <vector>

#include "gemv.h"
#include "scan_step.h"

namespace {

using longssm::gemv;
using longssm::silu;

// PyTorch's softplus (beta 1, threshold 20), so the step matches the composed one to rounding.
template <typename S>
inline S softplus(S v) { return v > S(20) ? v : std::log1p(std::exp(v)); }

template <typename S>
void mamba_step(const int64_t* dims, const S* u, const S* W_in, const S* conv_w, const S* conv_b, const S* conv0,
                const S* W_x, const S* W_dt, const S* dt_b, const S* A, const S* Dk, const S* x0, const S* W_out,
                S* conv1, S* x1, S* out, int threads) {
  const int64_t batch = dims[0], dm = dims[1], di = dims[2], K = dims[3], R = dims[4], N = dims[5];
  const int64_t P = R + 2 * N;  // x_proj's outputs per row: dt, B, C
  std::vector<S> xz(batch * 2 * di), x(batch * di), z(batch * di), dbc(batch * P), delta(batch * di),
      Bm(batch * N), Cm(batch * N), y(batch * di);

  gemv(W_in, u, dm, static_cast<const S*>(nullptr), xz.data(), batch, 2 * di, dm, threads);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t c = 0; c < di; ++c) {  // the conv's window: the d_conv - 1 kept inputs, then this one
      const S xn = xz[b * 2 * di + c];
      const S *w = conv_w + c * K, *h = conv0 + (b * di + c) * (K - 1);
      S* h1 = conv1 + (b * di + c) * (K - 1);
      S acc = S(0);
      for (int64_t k = 0; k < K - 1; ++k) acc += h[k] * w[k];
      acc += xn * w[K - 1];
      for (int64_t k = 0; k + 1 < K - 1; ++k) h1[k] = h[k + 1];
      if (K > 1) h1[K - 2] = xn;
      x[b * di + c] = silu(acc + (conv_b ? conv_b[c] : S(0)));
      z[b * di + c] = xz[b * 2 * di + di + c];
    }
  }
  gemv(W_x, x.data(), di, static_cast<const S*>(nullptr), dbc.data(), batch, P, di, threads);
  gemv(W_dt, dbc.data(), P, dt_b, delta.data(), batch, di, R, threads);
  for (int64_t i = 0; i < batch * di; ++i) delta[i] = softplus(delta[i]);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t k = 0; k < N; ++k) {
      Bm[b * N + k] = dbc[b * P + R + k];
      Cm[b * N + k] = dbc[b * P + R + N + k];
    }
  }
  longssm::scan_step(batch, di, N, x.data(), delta.data(), A, Bm.data(), Cm.data(), Dk, z.data(), x0, x1, y.data(),
                     threads);
  gemv(W_out, y.data(), di, static_cast<const S*>(nullptr), out, batch, dm, di, threads);
}

}  // namespace

#define LONGSSM_MAMBA_STEP_ENTRY(S, suffix)                                                                          \
  extern "C" void longssm_mamba_step_##suffix(const int64_t* dims, const S* u, const S* W_in, const S* conv_w,     \
                                              const S* conv_b, const S* conv0, const S* W_x, const S* W_dt,        \
                                              const S* dt_b, const S* A, const S* Dk, const S* x0, const S* W_out, \
                                              S* conv1, S* x1, S* out, int threads) {                              \
    mamba_step<S>(dims, u, W_in, conv_w, conv_b, conv0, W_x, W_dt, dt_b, A, Dk, x0, W_out, conv1, x1, out,         \
                  threads);                                                                                        \
  }

LONGSSM_MAMBA_STEP_ENTRY(float, f32)
LONGSSM_MAMBA_STEP_ENTRY(double, f64)
