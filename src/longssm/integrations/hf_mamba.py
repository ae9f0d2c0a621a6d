"""Mamba checkpoints in the ``transformers`` format (``MambaForCausalLM``: ``config.json`` and
safetensors, e.g. ``state-spaces/mamba-130m-hf``) in and out of longssm.

The two models compute the same function (Gu & Dao 2023, Figure 3; our ``mamba`` architecture):
an embedding, pre-RMSNorm residual blocks ``x + Mamba(norm(x))`` without MLPs, a final RMSNorm and
a (tied) LM head. Parameters map one to one (:data:`NAMES`); nothing is transposed or reshaped.
Reading needs no ``transformers`` (only ``safetensors``); the conversion refuses configurations
our block does not compute (biased projections, another activation) by name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from longssm.data import BPETokenizer, ByteTokenizer
from longssm.models import LanguageModel, ModelConfig, model_config
from longssm.models.checkpoint import save_model_only

#: transformers' parameter name (per layer: ``backbone.layers.{i}.``) -> ours.
NAMES = {
    "backbone.embeddings.weight": "backbone.embedding.weight",
    "backbone.norm_f.weight": "backbone.norm.weight",
    "lm_head.weight": "head.weight",
}
LAYER_NAMES = {
    "norm.weight": "norm1.weight",
    "mixer.in_proj.weight": "mixer.in_proj.weight",
    "mixer.conv1d.weight": "mixer.conv.weight",
    "mixer.conv1d.bias": "mixer.conv.bias",
    "mixer.x_proj.weight": "mixer.core.x_proj.weight",
    "mixer.dt_proj.weight": "mixer.core.dt_proj.weight",
    "mixer.dt_proj.bias": "mixer.core.dt_proj.bias",
    "mixer.A_log": "mixer.core.A_log",
    "mixer.D": "mixer.core.D",
    "mixer.out_proj.weight": "mixer.out_proj.weight",
}
_LAYER = re.compile(r"backbone\.layers\.(\d+)\.(.+)")


def ours_name(name: str) -> str:
    m = _LAYER.fullmatch(name)
    if m:
        if m.group(2) not in LAYER_NAMES:
            raise ValueError(f"unexpected Mamba parameter {name!r}")
        return f"backbone.blocks.{m.group(1)}.{LAYER_NAMES[m.group(2)]}"
    if name not in NAMES:
        raise ValueError(f"unexpected Mamba parameter {name!r}")
    return NAMES[name]


def theirs_name(name: str) -> str:
    back = {v: k for k, v in NAMES.items()}
    if name in back:
        return back[name]
    m = re.fullmatch(r"backbone\.blocks\.(\d+)\.(.+)", name)
    layer = {v: k for k, v in LAYER_NAMES.items()}
    if not m or m.group(2) not in layer:
        raise ValueError(f"parameter {name!r} has no place in a transformers Mamba model")
    return f"backbone.layers.{m.group(1)}.{layer[m.group(2)]}"


def config_from_hf(hf: dict) -> ModelConfig:
    """Our ModelConfig for a transformers ``MambaConfig`` dict; refuses what we do not compute."""
    if hf.get("model_type") != "mamba":
        raise ValueError(f"config.json: model_type is {hf.get('model_type')!r}, expected 'mamba'")
    for key, want in (("use_bias", False), ("use_conv_bias", True), ("hidden_act", "silu")):
        if hf.get(key, want) != want:
            raise ValueError(f"config.json: {key} = {hf[key]!r} is not supported (longssm's Mamba block has "
                             f"{key} = {want!r})")
    d_model, expand = hf["hidden_size"], hf.get("expand", 2)
    if hf.get("intermediate_size", expand * d_model) != expand * d_model:
        raise ValueError(f"config.json: intermediate_size {hf['intermediate_size']} != expand * hidden_size "
                         f"({expand} * {d_model})")
    options = {"d_state": hf.get("state_size", 16), "d_conv": hf.get("conv_kernel", 4), "expand": expand,
               "dt_rank": hf.get("time_step_rank") or -(-d_model // 16)}
    cfg = model_config("mamba", vocab_size=hf["vocab_size"], d_model=d_model, n_layer=hf["num_hidden_layers"],
                       norm_eps=hf.get("layer_norm_epsilon", 1e-5),
                       tie_embeddings=hf.get("tie_word_embeddings", True))
    return ModelConfig.from_dict({**cfg.to_dict(), "mixer_options": {"mamba": options}})


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.exists():
        return load_file(str(single))
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(str(folder / shard)).items()}
    raise FileNotFoundError(f"{folder}: no model.safetensors (or model.safetensors.index.json); "
                            f"save the model with save_pretrained(..., safe_serialization=True)")


def mamba_from_hf(folder: str | Path, dtype: torch.dtype = torch.float32):
    """(LanguageModel in eval mode, our ModelConfig, the folder's tokenizer or None) from a
    transformers ``MambaForCausalLM`` folder."""
    folder = Path(folder)
    try:
        hf = json.loads((folder / "config.json").read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder}: no config.json (not a transformers model folder)") from None
    cfg = config_from_hf(hf)
    theirs = _read_weights(folder)
    if cfg.tie_embeddings:
        theirs.pop("lm_head.weight", None)  # tied: the embedding is the head
    state = {ours_name(k): v for k, v in theirs.items()}
    model = LanguageModel(cfg).to(dtype)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shapes that differ from the config
        raise ValueError(f"{folder}: weights do not match the config: {str(e).splitlines()[-1].strip()}") from None
    missing = [k for k in missing if not (cfg.tie_embeddings and k == "head.weight")]
    if missing or unexpected:
        raise ValueError(f"{folder}: weights do not match the config: missing {missing}, unexpected {unexpected}")
    tok = folder / "tokenizer.json"
    return model.eval(), cfg, (BPETokenizer.from_file(tok) if tok.exists() else None)


def import_hf_mamba(folder: str | Path, out: str | Path, tokenizer=None) -> Path:
    """Convert a transformers Mamba folder into a longssm checkpoint folder ``out`` (weights and
    record; loads with ``longssm.models.load_model``, ``longssm eval`` / ``generate`` / ``info``).
    The tokenizer is the folder's ``tokenizer.json``, else ``tokenizer`` (a Tokenizer), else the byte
    tokenizer when the vocabulary holds 256 bytes."""
    model, cfg, tok = mamba_from_hf(folder)
    tok = tok or tokenizer
    if tok is None:
        if cfg.vocab_size < 256:
            raise ValueError(f"{folder}: no tokenizer.json, and the byte tokenizer needs a vocabulary of 256 "
                             f"(this one has {cfg.vocab_size}); give one (--tokenizer PATH/tokenizer.json)")
        tok = ByteTokenizer()
    if tok.vocab_size > cfg.vocab_size:
        raise ValueError(f"the tokenizer has {tok.vocab_size} tokens but the model only {cfg.vocab_size}")
    return save_model_only(out, model, {"model_config": cfg.to_dict(), "tokenizer": tok.to_json(),
                                        "source": {"format": "transformers MambaForCausalLM",
                                                   "path": str(Path(folder).resolve())}})


def config_to_hf(cfg: ModelConfig) -> dict:
    """The transformers ``MambaConfig`` dict of one of our pure Mamba models; refuses the others."""
    reasons = []
    if set(cfg.mixers) != {"mamba"}:
        reasons.append(f"mixers {sorted(set(cfg.mixers))} (only mamba)")
    if cfg.mlp_ratio:
        reasons.append(f"mlp_ratio {cfg.mlp_ratio} (Mamba blocks have no MLP)")
    if cfg.norm != "rmsnorm":
        reasons.append(f"norm {cfg.norm!r} (rmsnorm)")
    if cfg.pos_embedding != "none":
        reasons.append(f"pos_embedding {cfg.pos_embedding!r} (none)")
    opts = dict(cfg.mixer_options.get("mamba", {}))
    if opts.get("smr"):
        reasons.append("SMR on the inputs")
    if reasons:
        raise ValueError("not expressible as a transformers MambaForCausalLM: " + "; ".join(reasons))
    from longssm.layers.options import MambaOptions

    o = MambaOptions(**opts)
    return {"model_type": "mamba", "architectures": ["MambaForCausalLM"], "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.d_model, "num_hidden_layers": cfg.n_layer, "state_size": o.d_state,
            "conv_kernel": o.d_conv, "expand": o.expand, "intermediate_size": o.expand * cfg.d_model,
            "time_step_rank": o.dt_rank or -(-cfg.d_model // 16), "layer_norm_epsilon": cfg.norm_eps,
            "use_bias": False, "use_conv_bias": True, "hidden_act": "silu", "residual_in_fp32": True,
            "tie_word_embeddings": cfg.tie_embeddings}


def export_hf_mamba(model: LanguageModel, out: str | Path, tokenizer=None) -> Path:
    """Write ``model`` as a transformers Mamba folder (config.json, model.safetensors and, for a
    BPE tokenizer, tokenizer.json); ``out`` must not hold files already."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; choose a new folder")
    hf = config_to_hf(model.config)
    state = {theirs_name(k): v.detach().contiguous() for k, v in model.state_dict().items()
             if not (model.config.tie_embeddings and k == "head.weight")}
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    if isinstance(tokenizer, BPETokenizer):
        tokenizer.save(str(out / "tokenizer.json"))
    return out
