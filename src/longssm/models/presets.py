"""The one model table: architectures, the named presets built from them, and the model choices
of the experiments, drawn from the same table.

An *architecture* fixes the mixers (one main mixer, optionally attention at given layers), their
options and the block layout; :func:`model_config` sizes it. *Presets* are architectures at the H3
paper's sizes (Table 4 / Appendix: d_model / n_layer 768/12, 1024/24, 2048/24, 2560/32 with
attention at the reference configs' layers) and small CPU sizes. Sizes count a GPT-2 vocabulary
padded to a multiple of 8 (50264, as the H3 training configs do) and tied embeddings;
``longssm presets`` prints each with its parameter count.
"""

from __future__ import annotations

from typing import Any, Callable

from longssm.models.config import ModelConfig

GPT2_VOCAB = 50264  # 50257 rounded up to a multiple of 8

_H3 = {"d_state": 64, "head_dim": 1}
#: The H3 paper's synthetic attention baseline: 1 head, learned positions, attention dropout 0.1
#: as in the reference configs (safari ``synthetics/*/base.yaml``).
_SYN_ATTN = {"n_heads": 1, "use_rotary": False, "dropout": 0.1}

#: name -> (main mixer, mixer options, ModelConfig block fields).
ARCHITECTURES: dict[str, tuple[str, dict[str, dict[str, Any]], dict[str, Any]]] = {
    "h3": ("h3", {"h3": _H3}, {}),
    "s4d": ("s4d", {"s4d": {"d_state": 64}}, {}),
    "s5": ("s5", {"s5": {"d_state": 64}}, {}),
    # LongSSM's "S5" models: H3 with an S5 long filter.
    "h3-s5": ("h3", {"h3": {**_H3, "long_core": "s5"}}, {}),
    "attention": ("attention", {"attention": {}}, {}),
    # Mamba blocks have no MLP (Gu & Dao 2023, Table 12) and RMSNorm.
    "mamba": ("mamba", {"mamba": {"d_state": 16}}, {"mlp_ratio": 0.0, "norm": "rmsnorm"}),
    # The H3 paper's synthetic baselines (section 3.1): S4D as the reference configs ran it
    # (safari model/layer/s4d.yaml: S4D-Inv, ZOH, a plain linear output), attention as above, and
    # the H3 ablations of section 5.1.
    "s4d-inv-linear": ("s4d", {"s4d": {"d_state": 64, "init": "inv", "postact": "linear"}}, {}),
    "attention-learned": ("attention", {"attention": _SYN_ATTN}, {"pos_embedding": "learned"}),
    "h3-shift-only": ("h3", {"h3": {**_H3, "use_diag": False}}, {}),
    "h3-diag-only": ("h3", {"h3": {**_H3, "use_shift": False}}, {}),
    "h3-no-gate": ("h3", {"h3": {**_H3, "use_gate": False}}, {}),
}


def model_config(arch: str, *, vocab_size: int, d_model: int, n_layer: int, attention_at: tuple[int, ...] = (),
                 attention: dict[str, Any] | None = None, ssm_lr: float | None = None, **fields) -> ModelConfig:
    """Architecture ``arch`` at a size; attention (with ``attention`` options) replaces the main
    mixer at the layers ``attention_at`` (hybrids); ``ssm_lr`` sets the SSM learning rate of the
    h3/s4d options; ``fields`` override the architecture's block fields."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; available: {', '.join(ARCHITECTURES)}")
    mixer, options, block = ARCHITECTURES[arch]
    mixers = tuple("attention" if i in attention_at else mixer for i in range(n_layer))
    options = {k: dict(v) for k, v in options.items()}
    if attention is not None and "attention" in mixers:
        options["attention"] = dict(attention)
    if ssm_lr is not None:
        for name in set(options) & {"h3", "s4d"}:
            options[name]["ssm_lr"] = ssm_lr
    return ModelConfig(vocab_size=vocab_size, d_model=d_model, n_layer=n_layer, mixers=mixers,
                       mixer_options=options, **{**block, **fields})


def _paper(arch: str, d_model: int, n_layer: int, attention_at=()) -> Callable[[int], ModelConfig]:
    heads = {"n_heads": d_model // 64}
    return lambda v: model_config(arch, vocab_size=v, d_model=d_model, n_layer=n_layer,
                                  attention_at=attention_at, attention=heads)


def _tiny(arch: str, n_layer: int, attention_at=(), **fields) -> Callable[[int], ModelConfig]:
    return lambda v: model_config(arch, vocab_size=v, d_model=128, n_layer=n_layer, attention_at=attention_at,
                                  attention={"n_heads": 4}, **fields)


PRESETS: dict[str, Callable[[int], ModelConfig]] = {
    "h3-125m": _paper("h3", 768, 12),
    "hybrid-h3-125m": _paper("h3", 768, 12, (1, 8)),
    "transformer-125m": _paper("attention", 768, 12),
    # S4D blocks (2d^2 GLU output) are lighter than H3's 4d^2: 14 layers reach 125M.
    "s4d-125m": _paper("s4d", 768, 14),
    # 24 Mamba blocks of d 768 = 130M (Gu & Dao 2023, Table 12).
    "mamba-130m": _paper("mamba", 768, 24),
    "hybrid-h3-355m": _paper("h3", 1024, 24, (1, 13)),
    "hybrid-h3-1.3b": _paper("h3", 2048, 24, (1, 13)),
    "hybrid-h3-2.7b": _paper("h3", 2560, 32, (10, 21)),
    "tiny-h3": _tiny("h3", 4),
    "tiny-hybrid": _tiny("h3", 4, (1,)),
    "tiny-transformer": _tiny("attention", 4),
    "tiny-mamba": _tiny("mamba", 6),
    "tiny-s4d": _tiny("s4d", 4),
}

#: Nominal parameter counts of the paper-sized presets (GPT-2 vocabulary).
NOMINAL = {"h3-125m": 125e6, "hybrid-h3-125m": 125e6, "transformer-125m": 125e6, "s4d-125m": 125e6,
           "mamba-130m": 130e6, "hybrid-h3-355m": 355e6, "hybrid-h3-1.3b": 1.3e9, "hybrid-h3-2.7b": 2.7e9}

#: The experiments' model rows, as (architecture, model_config keywords) from the table above.
#: Synthetic recall (H3 section 3.1): GPT blocks (MLP 4x, LayerNorm) for every row, Mamba included;
#: the hybrid is H3 then attention.
SYNTHETIC_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "s4d": ("s4d-inv-linear", {}),
    "h3": ("h3", {}),
    "attention": ("attention-learned", {}),
    "mamba": ("mamba", {"mlp_ratio": 4.0, "norm": "layernorm"}),
    "hybrid": ("h3", {"attention_at": (1,), "attention": _SYN_ATTN}),
    "h3-shift-only": ("h3-shift-only", {}),
    "h3-diag-only": ("h3-diag-only", {}),
    "h3-no-gate": ("h3-no-gate", {}),
}
#: H3's language-model comparison (section 5.2, Table 3) at CPU scale: every row at about the same
#: non-embedding parameter count at d_model 256 (``lm_compare_config``). Depths follow the
#: paper's sizing: S4D blocks (2d^2 GLU output) are lighter than H3's, so 7 of them; Mamba blocks
#: have no MLP, so twice the layers (Gu & Dao 2023, Table 12). The Transformer (rotary positions)
#: widens its MLP to 4.5d so its blocks match the H3 blocks' SSM parameters; the hybrid puts
#: attention at layers 2 and 5 of 6, the 125M hybrid's layers 2 and 9 of 12 scaled to 6.
LM_COMPARE_MODELS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "s4d": ("s4d", 7, {}),
    "h3": ("h3", 6, {}),
    "transformer": ("attention", 6, {"mlp_ratio": 4.5}),
    "hybrid": ("h3", 6, {"attention_at": (1, 4)}),
    "mamba": ("mamba", 12, {}),
}


def lm_compare_config(name: str, *, vocab_size: int, d_model: int = 256) -> ModelConfig:
    """A row of LM_COMPARE_MODELS at width ``d_model`` (attention heads of 64 channels)."""
    if name not in LM_COMPARE_MODELS:
        raise ValueError(f"unknown lm-compare model {name!r}; available: {', '.join(LM_COMPARE_MODELS)}")
    arch, n_layer, kw = LM_COMPARE_MODELS[name]
    return model_config(arch, vocab_size=vocab_size, d_model=d_model, n_layer=n_layer,
                        attention={"n_heads": max(1, d_model // 64)}, **kw)


#: Length extension (LongSSM): Mamba blocks without an MLP, H3 blocks with one, LayerNorm in both
#: (as the committed results were run).
LENGTH_EXTENSION_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "mamba": ("mamba", {"norm": "layernorm"}),
    "h3": ("h3", {}),
}


def get_preset(name: str, vocab_size: int | None = None) -> ModelConfig:
    """The preset's config; ``vocab_size`` defaults to GPT-2's (paper sizes) or 256 bytes (tiny-*)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    if vocab_size is None:
        vocab_size = 256 if name.startswith("tiny-") else GPT2_VOCAB
    return PRESETS[name](vocab_size)
