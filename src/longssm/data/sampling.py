"""Tasks whose inputs can be sampled at any rate: the sampling-step experiments of SMR.

Our protocol (documented as ours; the SMR paper's own protocol is not available to us):

* **rate change**: a model trained on inputs sampled with step Delta is evaluated on the same
  underlying signals sampled ``c`` times faster (c > 1: more, closer samples) or slower, with its
  time steps scaled by ``1 / c`` (``dt_scale``);
* **non-uniform sampling**: each sequence observed at jittered times, ``Delta_t = Delta *
  exp(eps_t)``, ``eps_t ~ N(0, sigma^2)``; mixers that take a per-step step get the true gaps
  ``dt_t = Delta_t / Delta``, time-invariant ones the mean (``dt_scale``).

Tasks:

* :func:`sines`: classify a sum of two sinusoids by the band its frequencies come from. Each
  example is a function of continuous time on [0, 1), drawn from a seed and sampled at any times:
  class k draws frequencies from [2 + 3k, 4 + 3k] cycles per unit time (4 classes, at most 13
  cycles: even c = 1/4 of the 128-step training rate, 32 samples, stays above Nyquist), amplitudes
  from [0.5, 1.5], phases uniformly, plus N(0, 0.1^2) noise per sample.
  Example: class 0, x(t) = 1.2 sin(2 pi 2.7 t + 0.3) + 0.8 sin(2 pi 3.9 t + 5.1) + noise.
* :func:`digits`: scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes) resized by
  bilinear interpolation to r x r and read in raster order as r^2 pixels. Training at r = 16
  (256 steps); other resolutions are rate changes with c = (r / 16)^2 (r = 8: c = 1/4; r = 32:
  c = 4), the whole image being one unit of time.
* :func:`hold`: a token sequence sampled c times faster under zero-order hold (each token
  repeated c times) for discrete-token tasks (ListOps, language), integer c >= 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SINE_CLASSES = 4
SINE_STEPS = 128  # training samples per unit of time
DIGIT_TRAIN_RES = 16


@dataclass(frozen=True)
class Signals:
    """Parameters of sum-of-sinusoid signals: freq, amp, phase (n, 2); label (n,)."""

    freq: np.ndarray
    amp: np.ndarray
    phase: np.ndarray
    label: np.ndarray

    def at(self, times: np.ndarray, noise: np.random.Generator, noise_std: float = 0.1) -> torch.Tensor:
        """Samples at ``times`` (n, L) -> (n, L, 1) float32."""
        x = (self.amp[:, None, :] * np.sin(2 * math.pi * self.freq[:, None, :] * times[..., None]
                                            + self.phase[:, None, :])).sum(-1)
        x = x + noise.normal(0.0, noise_std, x.shape)
        return torch.from_numpy(x.astype(np.float32))[..., None]


def sines(n: int, seed: int) -> Signals:
    """``n`` signals drawn from ``seed`` (labels balanced in expectation)."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, SINE_CLASSES, n)
    low = 2.0 + 3.0 * label
    freq = low[:, None] + rng.uniform(0.0, 2.0, (n, 2))
    return Signals(freq, rng.uniform(0.5, 1.5, (n, 2)), rng.uniform(0.0, 2 * math.pi, (n, 2)), label)


def uniform_times(n: int, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Times (n, L) of ``L = round(SINE_STEPS * c)`` samples over [0, 1) and the per-step gaps
    relative to the training step (all 1 / c): (times, dt)."""
    L = max(1, round(SINE_STEPS * c))
    times = np.broadcast_to(np.arange(L) / L, (n, L))
    return times, np.full((n, L), SINE_STEPS / L)


def jittered_times(n: int, sigma: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """SINE_STEPS samples with gaps ``Delta * exp(eps)``, eps ~ N(0, sigma^2): (times, dt)."""
    dt = np.exp(rng.normal(0.0, sigma, (n, SINE_STEPS)))
    times = (np.cumsum(dt, axis=1) - dt[:, :1]) / SINE_STEPS  # the first sample at t = 0
    return times, dt


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits: images (1797, 8, 8) in [0, 1], labels (1797,)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the digits task needs scikit-learn: pip install 'longssm[experiments]'") from None
    d = load_digits()
    return torch.from_numpy(d.images / 16.0).float(), torch.from_numpy(d.target).long()


def resample(images: torch.Tensor, res: int) -> torch.Tensor:
    """Images (n, h, w) -> pixel sequences (n, res^2, 1) by bilinear interpolation (corners
    aligned, so 8 -> 8 is the identity), raster order."""
    up = F.interpolate(images[:, None], size=(res, res), mode="bilinear", align_corners=True)
    return up.flatten(1)[..., None]


def digit_rate(res: int) -> float:
    """The sampling factor c of resolution ``res`` against the training resolution."""
    return (res / DIGIT_TRAIN_RES) ** 2


def hold(tokens: torch.Tensor, c: int) -> torch.Tensor:
    """(n, L) -> (n, L * c): every token repeated c times (zero-order hold at c times the rate)."""
    if c < 1 or int(c) != c:
        raise ValueError(f"a token sequence can only be sampled faster by an integer factor >= 1, got {c}")
    return tokens.repeat_interleave(int(c), dim=1)
