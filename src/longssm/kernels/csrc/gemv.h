// The matrix-vector kernel of the `native` backend's decoding: y = x W^T + b for a few rows of x
// (see linear.cpp for why and how fast). A header, so that the fused decoding steps
// (mamba_step.cpp) call the same loops as the linear layer.

#pragma once

#include <omp.h>

#include <cstdint>

namespace longssm {

// y[r, o] for every row r of x: the weight row o is read once, contiguously, and dotted with each
// row of x. One output at a time, the loop streams the weights at the machine's read rate.
template <typename S>
[[gnu::always_inline]] inline void one_output(const S* W, const S* x, int64_t x_stride, const S* bias, S* y,
                                              int64_t rows, int64_t out, int64_t in, int64_t o) {
  const S* w = W + o * in;
  const S b = bias ? bias[o] : S(0);
  for (int64_t r = 0; r < rows; ++r) {
    const S* xr = x + r * x_stride;
    S acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = 0; i < in; ++i) acc += w[i] * xr[i];
    y[r * out + o] = acc + b;
  }
}

// Four outputs [o0, o0 + 4) at once: their weight rows stay in L1 while every row of x is dotted
// with all four, so each loaded element of x feeds four multiply-adds. With several rows of x
// (batched decoding) one output at a time is bound by loads, two per multiply-add; from 4 rows of
// x on, gemv takes this path: 1.36-1.40x faster at 8 rows, the same at 4 (measured with a 130M
// model's weights streaming from memory).
template <typename S>
void rows_by_four(const S* W, const S* x, int64_t x_stride, const S* bias, S* y, int64_t rows, int64_t out,
                  int64_t in, int64_t o0) {
  const S *w0 = W + o0 * in, *w1 = w0 + in, *w2 = w1 + in, *w3 = w2 + in;
  for (int64_t r = 0; r < rows; ++r) {
    const S* xr = x + r * x_stride;
    S a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
    for (int64_t i = 0; i < in; ++i) {
      const S xi = xr[i];
      a0 += w0[i] * xi;
      a1 += w1[i] * xi;
      a2 += w2[i] * xi;
      a3 += w3[i] * xi;
    }
    S* yr = y + r * out + o0;
    const S acc[4] = {a0, a1, a2, a3};
    for (int j = 0; j < 4; ++j) yr[j] = acc[j] + (bias ? bias[o0 + j] : S(0));
  }
}

template <typename S>
void gemv(const S* W, const S* x, int64_t x_stride, const S* bias, S* y, int64_t rows, int64_t out, int64_t in,
          int threads) {
  if (rows < 4) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t o = 0; o < out; ++o) one_output(W, x, x_stride, bias, y, rows, out, in, o);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t b = 0; b < out / 4; ++b) rows_by_four(W, x, x_stride, bias, y, rows, out, in, 4 * b);
  for (int64_t o = out / 4 * 4; o < out; ++o) one_output(W, x, x_stride, bias, y, rows, out, in, o);  // last 0-3
}

}  // namespace longssm

