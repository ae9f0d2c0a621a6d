"""longssm: long-context state-space language models (H3, S4D, selective SSMs, LongSSM, SMR).

``longssm.generate`` and ``longssm.LanguageModel`` are loaded on first use, so that ``import
longssm`` (and ``longssm --help``) stays light.
"""

__version__ = "0.1.0"

_LAZY = {"generate": "longssm.models", "LanguageModel": "longssm.models", "ModelConfig": "longssm.models",
         "get_preset": "longssm.models"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'longssm' has no attribute {name!r}")
