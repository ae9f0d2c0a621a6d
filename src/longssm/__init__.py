"""longssm: long-context state-space language models (H3, S4D, selective SSMs, LongSSM, SMR)."""

__version__ = "0.1.0"
