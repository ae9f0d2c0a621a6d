"""Config dataclasses, presets, the language model and generation."""

from longssm.models.config import ModelConfig
from longssm.models.generate import generate
from longssm.models.model import LanguageModel, ModelState, count_parameters, reset_rows
from longssm.models.presets import NOMINAL, PRESETS, get_preset

__all__ = ["ModelConfig", "LanguageModel", "ModelState", "count_parameters", "reset_rows", "generate",
           "PRESETS", "NOMINAL", "get_preset"]
