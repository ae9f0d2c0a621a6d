// Fused selective scan (Mamba, Gu & Dao 2023, Algorithm 2) for CPU: the `native` backend.
//
//   x_t = exp(dt_t A) x_{t-1} + dt_t u_t B_t     x: (D, N) per batch row
//   y_t = C_t . x_t
//
// Loaded by longssm/kernels/native.py (compiled on first use with the system C++ compiler, then
// called through ctypes); the Python side (native_scan.py) owns checks, the softplus of delta,
// the skip term D u and the gate silu(z). Plain C++ and OpenMP, no torch headers: the inner
// loops run over W channels at once ("lanes"), so the compiler vectorises them for whatever
// vector unit -march=native finds, and the state dimension stays a loop.
//
// Decoding calls scan_step (scan_step.h): one position, with the skip and the gate fused in.
//
// One pass over (batch, D, L) forward and one backward, as mamba_ssm's CUDA kernel: forward keeps
// only the state entering every chunk of T positions; backward walks the chunks from last to
// first, recomputes a chunk's decays and states from its entering state into a buffer that stays
// in cache, then runs the reverse recurrence. The reductions over channels (gradients of B and C)
// are summed lane-wise over a thread's channel groups and reduced across lanes once per chunk,
// into one slot per thread that Python sums in a fixed order (deterministic for a thread count).
//
// Layouts: dt, u, y, g_y, g_dt, g_u (batch, D, L) with any strides (elements); B, C, g_B, g_C
// (batch, N, L) with any strides; A, g_A (D, N), x0, last, g_x0 (batch, D, N), checkpoints
// (batch, chunks, D, N) contiguous. x0 may be null (zero state).

#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "scan_step.h"

namespace {

using longssm::lane_exp;
using longssm::scan_step;

constexpr int W = 16;  // lanes: channels processed together (one AVX-512 float vector)
constexpr int T = 32;  // positions per chunk: the checkpoint interval

struct Strides3 {  // strides of a (batch, channels, L) tensor, in elements
  int64_t b, c, l;
};

struct Shape {
  int64_t batch, D, L, N;
  int64_t groups() const { return (D + W - 1) / W; }
  int64_t chunks() const { return (L + T - 1) / T; }
};

// The lanes' [t][w] block of a (batch, D, L) tensor: channels d0..d0+W, positions t0..t0+n.
// Lanes past D read as 0 (their dt and u are 0, so their state stays 0 and adds nothing).
template <typename S>
void gather(const S* p, Strides3 s, const Shape& sh, int64_t b, int64_t d0, int64_t t0, int n, S* out) {
  for (int w = 0; w < W; ++w) {
    const int64_t d = d0 + w;
    if (d >= sh.D) {
      for (int t = 0; t < n; ++t) out[t * W + w] = S(0);
      continue;
    }
    const S* row = p + b * s.b + d * s.c + t0 * s.l;
    for (int t = 0; t < n; ++t) out[t * W + w] = row[t * s.l];
  }
}

template <typename S>
void scatter(const S* in, S* p, Strides3 s, const Shape& sh, int64_t b, int64_t d0, int64_t t0, int n) {
  for (int w = 0; w < W && d0 + w < sh.D; ++w) {
    S* row = p + b * s.b + (d0 + w) * s.c + t0 * s.l;
    for (int t = 0; t < n; ++t) row[t * s.l] = in[t * W + w];
  }
}

// B or C of one chunk as [t][n] (small: every lane broadcasts them).
template <typename S>
void gather_tn(const S* p, Strides3 s, const Shape& sh, int64_t b, int64_t t0, int n, S* out) {
  for (int64_t k = 0; k < sh.N; ++k)
    for (int t = 0; t < n; ++t) out[t * sh.N + k] = p[b * s.b + k * s.c + (t0 + t) * s.l];
}

// A (D, N) -> [n][w] for the lanes of d0 (0 past D).
template <typename S>
void lanes_of(const S* A, const Shape& sh, int64_t d0, S* out) {
  for (int64_t k = 0; k < sh.N; ++k)
    for (int w = 0; w < W; ++w) out[k * W + w] = d0 + w < sh.D ? A[(d0 + w) * sh.N + k] : S(0);
}

// A state (D, N) slice of a (.., D, N) tensor -> [n][w], and back.
template <typename S>
void load_state(const S* p, const Shape& sh, int64_t d0, S* X) {
  for (int64_t k = 0; k < sh.N; ++k)
    for (int w = 0; w < W; ++w) X[k * W + w] = (p && d0 + w < sh.D) ? p[(d0 + w) * sh.N + k] : S(0);
}

template <typename S>
void store_state(const S* X, const Shape& sh, int64_t d0, S* p) {
  for (int w = 0; w < W && d0 + w < sh.D; ++w)
    for (int64_t k = 0; k < sh.N; ++k) p[(d0 + w) * sh.N + k] = X[k * W + w];
}

// This thread's share [lo, hi) of the batch * groups tasks.
inline void my_tasks(int64_t tasks, int64_t& lo, int64_t& hi) {
  const int64_t id = omp_get_thread_num(), n = omp_get_num_threads();
  lo = tasks * id / n;
  hi = tasks * (id + 1) / n;
}

template <typename S>
void scan_forward(const Shape sh, const S* dt, Strides3 sdt, const S* u, Strides3 su, const S* A, const S* Bm,
                  Strides3 sB, const S* Cm, Strides3 sC, const S* x0, S* y, Strides3 sy, S* last, S* ck,
                  int threads) {
  const int64_t G = sh.groups(), N = sh.N, DN = sh.D * N;
#pragma omp parallel num_threads(threads)
  {
    std::vector<S> Al(N * W), X(N * W), dtl(T * W), ul(T * W), yl(T * W), Bl(T * N), Cl(T * N);
    int64_t lo, hi;
    my_tasks(sh.batch * G, lo, hi);
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t b = task / G, d0 = (task % G) * W;
      lanes_of(A, sh, d0, Al.data());
      load_state(x0 ? x0 + b * DN : nullptr, sh, d0, X.data());
      for (int64_t c = 0; c < sh.chunks(); ++c) {
        const int64_t t0 = c * T;
        const int n = static_cast<int>(sh.L - t0 < T ? sh.L - t0 : T);
        store_state(X.data(), sh, d0, ck + (b * sh.chunks() + c) * DN);
        gather(dt, sdt, sh, b, d0, t0, n, dtl.data());
        gather(u, su, sh, b, d0, t0, n, ul.data());
        gather_tn(Bm, sB, sh, b, t0, n, Bl.data());
        gather_tn(Cm, sC, sh, b, t0, n, Cl.data());
        for (int t = 0; t < n; ++t) {
          const S* dtv = &dtl[t * W];
          S dtu[W], acc[W] = {};
          for (int w = 0; w < W; ++w) dtu[w] = dtv[w] * ul[t * W + w];
          for (int64_t k = 0; k < N; ++k) {
            const S bk = Bl[t * N + k], ck_ = Cl[t * N + k];
            S* x = &X[k * W];
            const S* a = &Al[k * W];
            for (int w = 0; w < W; ++w) {
              x[w] = lane_exp(dtv[w] * a[w]) * x[w] + dtu[w] * bk;
              acc[w] += x[w] * ck_;
            }
          }
          for (int w = 0; w < W; ++w) yl[t * W + w] = acc[w];
        }
        scatter(yl.data(), y, sy, sh, b, d0, t0, n);
      }
      store_state(X.data(), sh, d0, last + b * DN);
    }
  }
}

// g_A_slots (threads, D, N), g_B_slots / g_C_slots (threads, batch, N, L): zero-filled by the
// caller and summed over the first dimension afterwards.
template <typename S>
void scan_backward(const Shape sh, const S* dt, Strides3 sdt, const S* u, Strides3 su, const S* A, const S* Bm,
                   Strides3 sB, const S* Cm, Strides3 sC, const S* ck, const S* gy, Strides3 sgy, const S* g_last,
                   S* g_dt, Strides3 sgdt, S* g_u, Strides3 sgu, S* g_A_slots, S* g_B_slots, S* g_C_slots, S* g_x0,
                   int threads) {
  const int64_t G = sh.groups(), N = sh.N, DN = sh.D * N, NL = N * sh.L;
#pragma omp parallel num_threads(threads)
  {
    int64_t lo, hi;
    my_tasks(sh.batch * G, lo, hi);
    const int64_t mine = hi - lo, id = omp_get_thread_num();
    const int64_t b_lo = mine ? lo / G : 0, nb = mine ? (hi - 1) / G - b_lo + 1 : 0;
    // per task: the carried state gradient and dLoss/dA; per batch row: lane-wise sums for g_B, g_C
    std::vector<S> Gc(mine * N * W), gAl(mine * N * W, S(0)), gBl(nb * T * N * W), gCl(nb * T * N * W);
    std::vector<S> Al(N * W), Xs((T + 1) * N * W), dec(T * N * W), dtl(T * W), ul(T * W), gyl(T * W),
        gdtl(T * W), gul(T * W), Bl(T * N), Cl(T * N);
    for (int64_t task = lo; task < hi; ++task)
      load_state(g_last ? g_last + (task / G) * DN : nullptr, sh, (task % G) * W, &Gc[(task - lo) * N * W]);
    for (int64_t c = sh.chunks() - 1; c >= 0; --c) {
      const int64_t t0 = c * T;
      const int n = static_cast<int>(sh.L - t0 < T ? sh.L - t0 : T);
      std::fill(gBl.begin(), gBl.end(), S(0));
      std::fill(gCl.begin(), gCl.end(), S(0));
      for (int64_t task = lo; task < hi; ++task) {
        const int64_t b = task / G, d0 = (task % G) * W;
        S* Gs = &Gc[(task - lo) * N * W];
        S* gA = &gAl[(task - lo) * N * W];
        S* gB = &gBl[(b - b_lo) * T * N * W];
        S* gC = &gCl[(b - b_lo) * T * N * W];
        lanes_of(A, sh, d0, Al.data());
        gather(dt, sdt, sh, b, d0, t0, n, dtl.data());
        gather(u, su, sh, b, d0, t0, n, ul.data());
        gather(gy, sgy, sh, b, d0, t0, n, gyl.data());
        gather_tn(Bm, sB, sh, b, t0, n, Bl.data());
        gather_tn(Cm, sC, sh, b, t0, n, Cl.data());
        load_state(ck + (b * sh.chunks() + c) * DN, sh, d0, Xs.data());
        for (int t = 0; t < n; ++t) {  // recompute: Xs[t + 1] is the state after position t
          const S* dtv = &dtl[t * W];
          S dtu[W];
          for (int w = 0; w < W; ++w) dtu[w] = dtv[w] * ul[t * W + w];
          for (int64_t k = 0; k < N; ++k) {
            const S bk = Bl[t * N + k];
            const S *a = &Al[k * W], *x = &Xs[(t * N + k) * W];
            S *e = &dec[(t * N + k) * W], *xn = &Xs[((t + 1) * N + k) * W];
            for (int w = 0; w < W; ++w) {
              e[w] = lane_exp(dtv[w] * a[w]);
              xn[w] = e[w] * x[w] + dtu[w] * bk;
            }
          }
        }
        for (int t = n - 1; t >= 0; --t) {  // reverse: Gs = dLoss/d(state after position t)
          const S *dtv = &dtl[t * W], *gyv = &gyl[t * W];
          S dtu[W], gdtu[W] = {}, gdt[W] = {};
          for (int w = 0; w < W; ++w) dtu[w] = dtv[w] * ul[t * W + w];
          for (int64_t k = 0; k < N; ++k) {
            const S bk = Bl[t * N + k], ck_ = Cl[t * N + k];
            const S *a = &Al[k * W], *e = &dec[(t * N + k) * W], *xp = &Xs[(t * N + k) * W],
                    *x = &Xs[((t + 1) * N + k) * W];
            S *g = &Gs[k * W], *ga = &gA[k * W], *gb = &gB[(t * N + k) * W], *gc = &gC[(t * N + k) * W];
            for (int w = 0; w < W; ++w) {
              g[w] += gyv[w] * ck_;
              gc[w] += gyv[w] * x[w];
              gdtu[w] += g[w] * bk;
              gb[w] += g[w] * dtu[w];
              const S wd = g[w] * e[w] * xp[w];  // dLoss/d(dt_t A)
              gdt[w] += wd * a[w];
              ga[w] += wd * dtv[w];
              g[w] *= e[w];
            }
          }
          for (int w = 0; w < W; ++w) {
            gdtl[t * W + w] = gdt[w] + gdtu[w] * ul[t * W + w];
            gul[t * W + w] = gdtu[w] * dtv[w];
          }
        }
        scatter(gdtl.data(), g_dt, sgdt, sh, b, d0, t0, n);
        scatter(gul.data(), g_u, sgu, sh, b, d0, t0, n);
      }
      for (int64_t i = 0; i < nb; ++i) {  // lanes -> this thread's slot of g_B, g_C
        S* slot_B = g_B_slots + (id * sh.batch + b_lo + i) * NL;
        S* slot_C = g_C_slots + (id * sh.batch + b_lo + i) * NL;
        for (int t = 0; t < n; ++t)
          for (int64_t k = 0; k < N; ++k) {
            const S *gb = &gBl[((i * T + t) * N + k) * W], *gc = &gCl[((i * T + t) * N + k) * W];
            S sb = 0, sc = 0;
            for (int w = 0; w < W; ++w) {
              sb += gb[w];
              sc += gc[w];
            }
            slot_B[k * sh.L + t0 + t] += sb;
            slot_C[k * sh.L + t0 + t] += sc;
          }
      }
    }
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t b = task / G, d0 = (task % G) * W;
      const S* gA = &gAl[(task - lo) * N * W];
      S* slot_A = g_A_slots + id * DN;
      for (int w = 0; w < W && d0 + w < sh.D; ++w)
        for (int64_t k = 0; k < N; ++k) slot_A[(d0 + w) * N + k] += gA[k * W + w];
      store_state(&Gc[(task - lo) * N * W], sh, d0, g_x0 + b * DN);
    }
  }
}

Strides3 st(const int64_t* s) { return {s[0], s[1], s[2]}; }

}  // namespace

// C entry points (ctypes). Scan: shape = {batch, D, L, N}; strides = 3 per (batch, ch, L) tensor,
// in the order of the pointer arguments that have them. Step: shape = {batch, D, N}.
#define LONGSSM_SCAN_ENTRY(S, suffix)                                                                              \
  extern "C" void longssm_scan_fwd_##suffix(const int64_t* shape, const int64_t* strides, const S* dt, const S* u, \
                                            const S* A, const S* B, const S* C, const S* x0, S* y, S* last, S* ck, \
                                            int threads) {                                                         \
    const Shape sh{shape[0], shape[1], shape[2], shape[3]};                                                        \
    scan_forward<S>(sh, dt, st(strides), u, st(strides + 3), A, B, st(strides + 6), C, st(strides + 9), x0, y,    \
                    st(strides + 12), last, ck, threads);                                                          \
  }                                                                                                                \
  extern "C" void longssm_scan_bwd_##suffix(const int64_t* shape, const int64_t* strides, const S* dt, const S* u, \
                                            const S* A, const S* B, const S* C, const S* ck, const S* gy,          \
                                            const S* g_last, S* g_dt, S* g_u, S* g_A, S* g_B, S* g_C, S* g_x0,     \
                                            int threads) {                                                         \
    const Shape sh{shape[0], shape[1], shape[2], shape[3]};                                                        \
    scan_backward<S>(sh, dt, st(strides), u, st(strides + 3), A, B, st(strides + 6), C, st(strides + 9), ck, gy,   \
                     st(strides + 12), g_last, g_dt, st(strides + 15), g_u, st(strides + 18), g_A, g_B, g_C, g_x0,  \
                     threads);                                                                                     \
  }                                                                                                                \
  extern "C" void longssm_scan_step_##suffix(const int64_t* shape, const S* u, const S* delta, const S* A,         \
                                             const S* B, const S* C, const S* Dk, const S* z, const S* x0, S* x1,   \
                                             S* y, int threads) {                                                   \
    scan_step<S>(shape[0], shape[1], shape[2], u, delta, A, B, C, Dk, z, x0, x1, y, threads);                        \
  }

LONGSSM_SCAN_ENTRY(float, f32)
LONGSSM_SCAN_ENTRY(double, f64)

// Positions per chunk, for the caller's checkpoint buffer (batch, chunks, D, N).
extern "C" int longssm_scan_chunk() { return T; }
