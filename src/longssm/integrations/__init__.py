"""Bridges to the tools users already have: ``transformers`` Mamba checkpoints (``hf_mamba``),
a ``transformers`` model class (``hf``) and an ``lm-evaluation-harness`` model (``lm_eval``).
Each imports its optional package only when used; a missing one is an error naming the
``pip install`` to run."""
