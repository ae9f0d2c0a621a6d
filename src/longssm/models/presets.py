"""Model presets by name: the H3 paper's sizes (Table 4 / Appendix: d_model / n_layer 768/12,
1024/24, 2048/24, 2560/32 with attention at the reference configs' layers) and small CPU models.

Sizes count a GPT-2 vocabulary padded to a multiple of 8 (50264, as the H3 training configs do)
and tied embeddings; ``longssm presets`` prints each with its parameter count.
"""

from __future__ import annotations

from typing import Callable

from longssm.models.config import ModelConfig

GPT2_VOCAB = 50264  # 50257 rounded up to a multiple of 8


def _hybrid(n_layer: int, attention_at: tuple[int, ...], other: str = "h3") -> tuple[str, ...]:
    return tuple("attention" if i in attention_at else other for i in range(n_layer))


def _large(d_model: int, n_layer: int, attention_at: tuple[int, ...], vocab: int) -> ModelConfig:
    return ModelConfig(
        vocab_size=vocab, d_model=d_model, n_layer=n_layer, mixers=_hybrid(n_layer, attention_at),
        mixer_options={"h3": {"d_state": 64, "head_dim": 1}, "attention": {"n_heads": d_model // 64}},
    )


def _tiny(mixers: tuple[str, ...], vocab: int, **kw) -> ModelConfig:
    opts = {"h3": {"d_state": 64, "head_dim": 1}, "attention": {"n_heads": 4}, "s4d": {"d_state": 64},
            "mamba": {"d_state": 16}}
    return ModelConfig(vocab_size=vocab, d_model=128, n_layer=len(mixers), mixers=mixers,
                       mixer_options={m: opts[m] for m in set(mixers)}, **kw)


PRESETS: dict[str, Callable[[int], ModelConfig]] = {
    "h3-125m": lambda v: _large(768, 12, (), v),
    "hybrid-h3-125m": lambda v: _large(768, 12, (1, 8), v),
    "transformer-125m": lambda v: _large(768, 12, tuple(range(12)), v),
    # S4D blocks (2d^2 GLU output) are lighter than H3's 4d^2: 14 layers reach 125M.
    "s4d-125m": lambda v: ModelConfig(vocab_size=v, d_model=768, n_layer=14, mixers=("s4d",) * 14,
                                      mixer_options={"s4d": {"d_state": 64}}),
    # Mamba blocks have no MLP (Gu & Dao 2023, Table 12: 24 layers of d 768 = 130M).
    "mamba-130m": lambda v: ModelConfig(vocab_size=v, d_model=768, n_layer=24, mixers=("mamba",) * 24,
                                        mlp_ratio=0.0, norm="rmsnorm", mixer_options={"mamba": {"d_state": 16}}),
    "hybrid-h3-355m": lambda v: _large(1024, 24, (1, 13), v),
    "hybrid-h3-1.3b": lambda v: _large(2048, 24, (1, 13), v),
    "hybrid-h3-2.7b": lambda v: _large(2560, 32, (10, 21), v),
    "tiny-h3": lambda v: _tiny(("h3",) * 4, v),
    "tiny-hybrid": lambda v: _tiny(("h3", "attention", "h3", "h3"), v),
    "tiny-transformer": lambda v: _tiny(("attention",) * 4, v),
    "tiny-mamba": lambda v: _tiny(("mamba",) * 6, v, mlp_ratio=0.0, norm="rmsnorm"),
    "tiny-s4d": lambda v: _tiny(("s4d",) * 4, v),
}

#: Nominal parameter counts of the paper-sized presets (GPT-2 vocabulary).
NOMINAL = {"h3-125m": 125e6, "hybrid-h3-125m": 125e6, "transformer-125m": 125e6, "s4d-125m": 125e6,
           "mamba-130m": 130e6, "hybrid-h3-355m": 355e6, "hybrid-h3-1.3b": 1.3e9, "hybrid-h3-2.7b": 2.7e9}


def get_preset(name: str, vocab_size: int | None = None) -> ModelConfig:
    """The preset's config; ``vocab_size`` defaults to GPT-2's (paper sizes) or 256 bytes (tiny-*)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    if vocab_size is None:
        vocab_size = 256 if name.startswith("tiny-") else GPT2_VOCAB
    return PRESETS[name](vocab_size)
