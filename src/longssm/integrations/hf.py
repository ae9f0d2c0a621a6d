"""longssm models as ``transformers`` models: ``LongssmConfig`` and ``LongssmForCausalLM``.

``LongssmForCausalLM`` wraps our :class:`~longssm.models.LanguageModel` (any architecture: H3,
hybrids, Mamba, S4D, attention) as a ``PreTrainedModel`` with ``GenerationMixin``:

* ``forward(input_ids, state=None, labels=None)`` returns :class:`LongssmCausalLMOutput` with
  ``logits``, ``loss`` (next-token, labels shifted inside, -100 ignored) and ``state``, our
  :class:`~longssm.models.state.ModelState` after the inputs;
* ``generate()`` carries that state between steps: the prompt runs once, then each new token is
  one recurrent ``step`` (constant cost per token for SSMs), never a re-run of the prefix;
* ``save_pretrained`` / ``from_pretrained`` round-trip through safetensors; :func:`register` makes
  ``AutoConfig`` / ``AutoModelForCausalLM`` know the ``longssm`` model type in this process, and a
  folder written by :func:`export_hf` also loads with ``trust_remote_code=True`` in a Python that
  never called it (this file is saved beside the weights and imports the installed longssm);
* :func:`hf_tokenizer` gives a ``PreTrainedTokenizerFast`` that encodes exactly as our byte or
  BPE tokenizer.

Padded batches (an attention mask with zeros, padding on either side) run grouped by length
(:mod:`longssm.models.padded`): no state ever sees padding, and each row's logits, state and
continuation are the ones it gets alone. ``generate()`` needs left padding, as for every
decoder-only model in transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import torch
    import torch.nn.functional as F
    from transformers import (AutoConfig, AutoModelForCausalLM, GenerationMixin, PretrainedConfig,
                              PreTrainedModel, PreTrainedTokenizerFast)
    from transformers.utils import ModelOutput
except ImportError as e:  # pragma: no cover - exercised by a test without the extra in a subprocess
    raise ImportError(f"longssm.integrations.hf needs transformers ({e}): pip install 'longssm[hf]'") from None

from longssm.models.config import ModelConfig
from longssm.models.model import LanguageModel
from longssm.models.padded import GroupedState, forward_padded, from_mask, step_grouped, to_left


class LongssmConfig(PretrainedConfig):
    """A ``PretrainedConfig`` carrying our :class:`~longssm.models.ModelConfig` as a dict."""

    model_type = "longssm"

    def __init__(self, longssm_config: dict[str, Any] | None = None, **kwargs):
        cfg = ModelConfig.from_dict(longssm_config) if longssm_config is not None else ModelConfig()
        self.longssm_config = cfg.to_dict()
        self.vocab_size = cfg.vocab_size
        self.hidden_size = cfg.d_model
        self.num_hidden_layers = cfg.n_layer
        kwargs.setdefault("tie_word_embeddings", cfg.tie_embeddings)
        super().__init__(**kwargs)


@dataclass
class LongssmCausalLMOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    state: Any = None


class LongssmForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = LongssmConfig
    base_model_prefix = "lm"
    main_input_name = "input_ids"
    _tied_weights_keys = {"lm.head.weight": "lm.backbone.embedding.weight"}

    def __init__(self, config: LongssmConfig):
        super().__init__(config)
        self.lm = LanguageModel(ModelConfig.from_dict(config.longssm_config))
        self.post_init()

    def _init_weights(self, module):
        """Our modules initialise themselves (GPT-2 init, the SSM papers' cores) when built."""

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the carried ModelState is the cache

    def get_input_embeddings(self):
        return self.lm.backbone.embedding

    def get_output_embeddings(self):
        return self.lm.head

    def forward(self, input_ids: torch.Tensor, state=None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, use_cache: bool | None = None,
                return_dict: bool | None = None, **kwargs) -> LongssmCausalLMOutput:
        if isinstance(state, GroupedState):  # a padded batch's rows, continued group by group
            logits, state = step_grouped(self.lm, input_ids[:, -1], state)
            logits = logits[:, None]
        elif state is not None and input_ids.shape[1] == 1:
            logits, state = self.lm.step(input_ids[:, 0], state)  # one recurrent step per new token
            logits = logits[:, None]
        elif attention_mask is not None and not bool(attention_mask.all()):
            if state is not None:
                raise ValueError("a padded batch (attention_mask with zeros) must start from the zero state")
            ids, lengths, left = from_mask(input_ids, attention_mask)
            logits, state = forward_padded(self.lm, ids, lengths)  # no state sees padding
            if left:
                logits = to_left(logits, lengths)
        else:
            logits, state = self.lm(input_ids, state)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        return LongssmCausalLMOutput(loss=loss, logits=logits, state=state)

    def prepare_inputs_for_generation(self, input_ids, state=None, attention_mask=None, **kwargs):
        """The whole prompt first; afterwards only the newest token, with the state carried."""
        if state is not None:
            return {"input_ids": input_ids[:, -1:], "state": state}
        if attention_mask is not None and not bool(attention_mask[:, -1].all()):
            raise ValueError("generate() with right-padded prompts would continue after the padding; pad on "
                             "the left (tokenizer.padding_side = 'left')")
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, is_encoder_decoder=False,
                                            num_new_tokens=1):
        model_kwargs = super()._update_model_kwargs_for_generation(
            outputs, model_kwargs, is_encoder_decoder=is_encoder_decoder, num_new_tokens=num_new_tokens)
        model_kwargs["state"] = outputs.state
        return model_kwargs


def register() -> None:
    """Make ``AutoConfig`` / ``AutoModelForCausalLM`` resolve the ``longssm`` model type here."""
    AutoConfig.register("longssm", LongssmConfig, exist_ok=True)
    AutoModelForCausalLM.register(LongssmConfig, LongssmForCausalLM, exist_ok=True)


def to_hf(model: LanguageModel) -> LongssmForCausalLM:
    """Wrap one of our models (its weights shared, not copied)."""
    wrapped = LongssmForCausalLM(LongssmConfig(longssm_config=model.config.to_dict()))
    wrapped.lm = model
    return wrapped.train(model.training)


def hf_tokenizer(tokenizer) -> PreTrainedTokenizerFast:
    """A ``PreTrainedTokenizerFast`` that encodes and decodes as our ``tokenizer`` does."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    from longssm.data import BPETokenizer, ByteTokenizer

    if isinstance(tokenizer, BPETokenizer):
        backend = Tokenizer.from_str(tokenizer._tok.to_str())
    elif isinstance(tokenizer, ByteTokenizer):
        # UTF-8 bytes -> ByteLevel's printable stand-ins, one pre-token each -> id = the byte value
        backend = Tokenizer(models.WordLevel({c: b for b, c in _byte_chars().items()}, unk_token="\x00"))
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            pre_tokenizers.Split(Regex("(?m)."), behavior="isolated"),
        ])
        backend.decoder = decoders.ByteLevel()
    else:
        raise TypeError(f"no transformers tokenizer for {type(tokenizer).__name__}")
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def _byte_chars() -> dict[int, str]:
    """GPT-2's printable stand-in for every byte (the ByteLevel alphabet's mapping): printable
    Latin-1 bytes stand for themselves, the others for 256, 257, ... in byte order."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    others = iter(range(256, 512))
    return {b: chr(b) if b in printable else chr(next(others)) for b in range(256)}


def export_hf(checkpoint: str | Path, out: str | Path) -> Path:
    """Write a longssm checkpoint as a transformers folder: config.json (with ``auto_map`` for
    ``trust_remote_code``), model.safetensors, this module, and the tokenizer files."""
    from longssm.models.checkpoint import load_model

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; choose a new folder")
    model, tok, _, _ = load_model(checkpoint)
    wrapped = to_hf(model)
    LongssmConfig.register_for_auto_class()
    LongssmForCausalLM.register_for_auto_class("AutoModelForCausalLM")
    wrapped.save_pretrained(out)
    hf_tokenizer(tok).save_pretrained(out)
    return out
