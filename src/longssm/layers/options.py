"""The options of each sequence mixer: frozen dataclasses with a docstring line per field.

A mixer is built as ``MIXER(d_model, **options)``; the options go through its dataclass here, so
the defaults live in one place, and a model config validates ``mixer_options`` against the same
classes (``longssm.configs.build``): an unknown or mistyped key is an error naming it before any
data is prepared.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SMROptions:
    """State Memory Replay on the SSM core's input (longssm.layers.smr), for every SSM mixer."""

    smr: bool = False
    """Apply SMR (a learned multi-step memory gating each SSM input) to the SSM core's input."""
    smr_kernel: int = 4
    """SMR's memory: the number of recent inputs its causal convolution reads."""
    smr_conv: str = "depthwise"
    """SMR's convolution: depthwise (a filter per channel) or full (across channels)."""
    smr_gate: str = "2sigmoid"
    """SMR's gate: 2sigmoid (damps or amplifies; exactly the identity at init) or sigmoid (damps)."""


@dataclass(frozen=True)
class H3Options(SMROptions):
    """The H3 mixer (H3 section 3.2): shift SSM on K, diagonal SSM on K (x) V, gated by Q."""

    d_state: int = 64
    """Real state size of the diagonal SSM per channel (even)."""
    head_dim: int = 1
    """Channels per head; d_model = n_heads * head_dim (H3 section 3.2, multi-head)."""
    shift_state: int = 64
    """Length of the shift SSM's window."""
    discretization: str = "bilinear"
    """Diagonal SSM discretization: zoh or bilinear (H3's)."""
    init: str = "lin"
    """Diagonal SSM A initialisation: lin or inv."""
    use_shift: bool = True
    """Ablation (H3 section 5.1): False skips the shift SSM (k' = k)."""
    use_diag: bool = True
    """Ablation: False replaces the diagonal SSM by the identity."""
    use_gate: bool = True
    """Ablation: False drops the Q gate."""
    ssm_lr: float = 1e-3
    """Learning rate of the SSM parameters (dt, A, B of both SSMs), no weight decay."""
    dt_min: float = 1e-3
    """Smallest initial time step of the diagonal SSM."""
    dt_max: float = 1e-1
    """Largest initial time step of the diagonal SSM."""
    chunk_size: int = 4096
    """Tokens per FFT chunk of the diagonal SSM's state-passing convolution."""
    long_core: str = "diag"
    """The core of the long SSM: diag (S4D's diagonal SSM, the paper's) or s5 (LongSSM's "S5"
    models: d_state complex modes shared by the heads, ZOH)."""


@dataclass(frozen=True)
class S4DOptions(SMROptions):
    """The S4D mixer (Gu et al. 2022, s4d.py): diagonal SSM, GELU, output transform."""

    d_state: int = 64
    """Real state size per channel (even)."""
    init: str = "lin"
    """A initialisation: lin (S4D-Lin) or inv (S4D-Inv)."""
    discretization: str = "zoh"
    """zoh (s4d.py's) or bilinear."""
    postact: str = "glu"
    """Output transform: glu (Linear(d, 2d) + GLU, s4d.py's) or linear."""
    ssm_lr: float = 1e-3
    """Learning rate of dt, A and B, no weight decay."""
    dt_min: float = 1e-3
    """Smallest initial time step."""
    dt_max: float = 1e-1
    """Largest initial time step."""
    chunk_size: int = 4096
    """Tokens per FFT chunk of the state-passing convolution."""


@dataclass(frozen=True)
class S5Options(SMROptions):
    """The S5 mixer (Smith et al. 2023): one MIMO diagonal SSM shared by all channels, GELU,
    output transform (as the S4D mixer)."""

    d_state: int = 64
    """P, the complex modes of the shared state (with their conjugates)."""
    init: str = "lin"
    """Lambda initialisation: lin (S4D-Lin) or inv (S4D-Inv)."""
    postact: str = "glu"
    """Output transform: glu or linear."""
    ssm_lr: float = 1e-3
    """Learning rate of Lambda, the steps and B, no weight decay."""
    dt_min: float = 1e-3
    """Smallest initial step (log-uniform per mode)."""
    dt_max: float = 1e-1
    """Largest initial step."""


@dataclass(frozen=True)
class ShiftOptions:
    """The shift SSM of H3 used on its own (a learned causal filter per channel)."""

    d_state: int = 64
    """Window length (the filter's length)."""
    ssm_lr: float = 1e-3
    """Learning rate of B, no weight decay."""
    postact: str = "glu"
    """Output transform: glu or linear."""


@dataclass(frozen=True)
class MambaOptions(SMROptions):
    """The Mamba block (Gu & Dao 2023, section 3.4) around the selective SSM core."""

    d_state: int = 16
    """State size N per channel."""
    d_conv: int = 4
    """Width of the causal depthwise convolution."""
    expand: int = 2
    """d_inner = expand * d_model."""
    dt_rank: int | None = None
    """Rank of the dt projection; None: ceil(d_model / 16)."""
    dt_min: float = 1e-3
    """Smallest initial time step."""
    dt_max: float = 1e-1
    """Largest initial time step."""
    dt_init_floor: float = 1e-4
    """Floor of the initial time steps."""
    segment_size: int | None = None
    """Positions per cache-sized scan segment; None: sized to about 1M state elements."""


@dataclass(frozen=True)
class AttentionOptions:
    """Causal multi-head attention; its state is the KV cache."""

    n_heads: int = 1
    """Heads; divides d_model."""
    use_rotary: bool = True
    """Rotary position embeddings (RoFormer)."""
    window: int | None = None
    """Sliding window: token t attends to (t - window, t]; None: no window."""
    bias: bool = True
    """Biases in the projections."""
    rotary_base: float = 10000.0
    """Rotary frequency base."""
    dropout: float = 0.0
    """Dropout on the attention probabilities (training mode only)."""
