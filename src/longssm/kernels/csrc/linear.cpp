// y = x W^T + b for a few rows of x: the `native` backend's linear layer when decoding on CPU.
//
// Decoding one token per row is a chain of matrix-vector products whose cost is reading the
// weights once. PyTorch's CPU path for that shape streams nn.Linear's (out, in) layout at well
// under the machine's copy bandwidth (BENCHMARKS.md); this loop reads each weight row once,
// contiguously, and dots it with every row of x while it sits in L1 (four rows at a time from 4
// rows of x on). Output rows are split across OpenMP threads (the runtime torch already loaded,
// see native.py).
//
// W (out, in) contiguous; x (rows, in) with row stride x_stride; bias (out,) or null;
// y (rows, out) contiguous. The dot products are summed in vector lanes (a different order from
// PyTorch's: results agree to rounding).

#include "gemv.h"

using longssm::gemv;

extern "C" void longssm_gemv_f32(const float* W, const float* x, int64_t x_stride, const float* bias, float* y,
                                 int64_t rows, int64_t out, int64_t in, int threads) {
  gemv<float>(W, x, x_stride, bias, y, rows, out, in, threads);
}

extern "C" void longssm_gemv_f64(const double* W, const double* x, int64_t x_stride, const double* bias, double* y,
                                 int64_t rows, int64_t out, int64_t in, int threads) {
  gemv<double>(W, x, x_stride, bias, y, rows, out, in, threads);
}
