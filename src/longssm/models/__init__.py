"""Config dataclasses, the model table, the backbone and its heads, the model state, checkpoints
and generation."""

from longssm.models.backbone import Backbone, set_activation_checkpointing
from longssm.models.checkpoint import CheckpointError, load_model
from longssm.models.config import ModelConfig
from longssm.models.generate import generate
from longssm.models.model import LanguageModel, SequenceClassifier, count_parameters
from longssm.models.presets import NOMINAL, PRESETS, get_preset, model_config
from longssm.models.state import ModelState, carry, reset_rows

__all__ = ["ModelConfig", "Backbone", "set_activation_checkpointing", "LanguageModel", "SequenceClassifier", "ModelState", "carry",
           "count_parameters", "reset_rows", "generate", "PRESETS", "NOMINAL", "get_preset", "model_config",
           "CheckpointError", "load_model"]
