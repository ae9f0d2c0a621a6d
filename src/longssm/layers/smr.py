"""State Memory Replay (Qi et al., "SMR: State Memory Replay for Long Sequence Modeling", ACL
Findings 2024) as a wrapper core.

SMR adjusts each input of an SSM by a learned function of the last few inputs, a multi-step
memory, so the SSM's transition stays as it is (an LTI core keeps its FFT convolution):

    u'_t = g( sum_{j < k} W_j u_{t-j} + b ) * u_t        then  y = core(u')

The paper's text and code are not available to us; this is the form its reviews and public
summaries agree on. It acts as a learned, input-dependent step size on the input path. Where the
paper is silent we choose, and each choice is an option (``SMROptions``):

* ``smr_conv``: ``depthwise`` (one length-k filter per channel, the default) or ``full`` (every
  channel's gate reads every channel's last k inputs);
* ``smr_gate``: ``2sigmoid`` (default; ``2 * sigmoid`` can amplify as well as damp, and equals 1
  at zero, so SMR starts exactly at the identity) or ``sigmoid`` (only damps; its bias starts at
  8, so SMR starts within 3.4e-4 of the identity);
* the filter starts at zero, so SMR is the identity at initialisation and its gradient is not.

State: ``SMRState(window, inner)``: the last k - 1 inputs (batch, H, k - 1), oldest first, and the
wrapped core's state, so streaming, generation and carried-state training keep working.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from longssm.layers.cores import Core

SMR_CONVS = ("depthwise", "full")
SMR_GATES = ("2sigmoid", "sigmoid")
_SIGMOID_BIAS = 8.0  # sigmoid(8) = 1 - 3.4e-4


class SMRState(NamedTuple):
    window: torch.Tensor  # (batch, H, k - 1): previous inputs, oldest first
    inner: Any  # the wrapped core's state


class SMRCore(Core):
    """SMR in front of ``inner`` (a core on H channels); ``kernel`` = k >= 1 steps of memory."""

    def __init__(self, inner: Core, H: int, kernel: int = 4, conv: str = "depthwise", gate: str = "2sigmoid"):
        super().__init__()
        if kernel < 1:
            raise ValueError(f"smr_kernel must be >= 1, got {kernel}")
        if conv not in SMR_CONVS:
            raise ValueError(f"smr_conv must be one of {SMR_CONVS}, got {conv!r}")
        if gate not in SMR_GATES:
            raise ValueError(f"smr_gate must be one of {SMR_GATES}, got {gate!r}")
        self.inner, self.H, self.kernel, self.gate = inner, H, kernel, gate
        self.groups = H if conv == "depthwise" else 1
        # (H, H / groups, k): the filter of the causal convolution, zero at the start
        self.weight = nn.Parameter(torch.zeros(H, H // self.groups, kernel))
        self.bias = nn.Parameter(torch.full((H,), 0.0 if gate == "2sigmoid" else _SIGMOID_BIAS))
        self.per_step_dt = inner.per_step_dt

    def _gate(self, z):
        return 2 * torch.sigmoid(z) if self.gate == "2sigmoid" else torch.sigmoid(z)

    def _window(self, state, u):
        if state is None:
            return u.new_zeros(u.shape[0], self.H, self.kernel - 1), None
        return state.window, state.inner

    def _forward(self, u, state, return_state, **kw):
        window, inner = self._window(state, u)
        history = torch.cat([window.to(u.dtype), u], dim=-1)  # (batch, H, k - 1 + L)
        g = self._gate(F.conv1d(history, self.weight, self.bias, groups=self.groups))  # (batch, H, L)
        y, inner = self.inner(g * u, inner, return_state, **kw)
        if not return_state:
            return y, None
        return y, SMRState(history[..., history.shape[-1] - (self.kernel - 1):], inner)

    def _step(self, u_t, state, **kw):
        window, inner = self._window(state, u_t)
        history = torch.cat([window.to(u_t.dtype), u_t[..., None]], dim=-1)  # (batch, H, k)
        z = torch.einsum("bgik,goik->bgo", history.unflatten(1, (self.groups, -1)),
                         self.weight.unflatten(0, (self.groups, -1))).flatten(1) + self.bias
        y, inner = self.inner.step(self._gate(z) * u_t, inner, **kw)
        return y, SMRState(history[..., 1:], inner)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> SMRState:
        kw = self._kw(device, dtype)
        return SMRState(torch.zeros(batch_size, self.H, self.kernel - 1, **kw),
                        self.inner.init_state(batch_size, device=device, dtype=dtype))


def maybe_smr(core: Core, H: int, options) -> Core:
    """``core`` wrapped in SMR when the mixer's options say ``smr = true``."""
    if not options.smr:
        return core
    return SMRCore(core, H, options.smr_kernel, options.smr_conv, options.smr_gate)
