"""Input checks shared by kernels and layers: errors that name the argument and what was expected."""

from __future__ import annotations

import torch


def check_float(name: str, x: torch.Tensor, *, allow_complex: bool = False) -> None:
    """TypeError unless ``x`` is a floating (optionally complex) tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_floating_point() or (allow_complex and x.is_complex()):
        return
    kinds = "a floating or complex" if allow_complex else "a floating-point"
    raise TypeError(f"{name} must be {kinds} tensor, got dtype {x.dtype}")


def check_shape(name: str, x: torch.Tensor, shape: tuple[int | None, ...]) -> None:
    """ValueError unless ``x.shape`` matches ``shape`` (None matches any size)."""
    if x.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")


def check_dtype(name: str, x: torch.Tensor, expected: torch.dtype | None) -> None:
    """TypeError when ``x`` and the layer's parameters (``expected``) differ in dtype outside
    autocast (under autocast the projections cast their inputs themselves)."""
    if expected is None or x.dtype == expected:
        return
    device = x.device.type
    try:
        autocast = torch.is_autocast_enabled(device)
    except TypeError:  # torch < 2.4: no device argument
        autocast = torch.is_autocast_cpu_enabled() if device == "cpu" else torch.is_autocast_enabled()
    if autocast:
        return
    raise TypeError(f"{name} has dtype {x.dtype}, the layer's parameters {expected}: convert one of them "
                    f"(model.to(dtype)) or run under torch.autocast")


def check_seq(name: str, x: torch.Tensor, d_model: int, dtype: torch.dtype | None = None) -> None:
    """Checks a (batch, seq_len, d_model) floating input with seq_len >= 1 (and, given the layer's
    parameter ``dtype``, that it matches outside autocast)."""
    check_float(name, x)
    check_shape(name, x, (None, None, d_model))
    if x.shape[1] == 0:
        raise ValueError(f"{name} has seq_len 0; expected (batch, seq_len >= 1, {d_model})")
    if x.shape[0] == 0:
        raise ValueError(f"{name} has batch 0; expected (batch >= 1, seq_len, {d_model})")
    check_dtype(name, x, dtype)


def check_token(name: str, x: torch.Tensor, d_model: int, dtype: torch.dtype | None = None) -> None:
    """Checks a (batch, d_model) floating input (one token)."""
    check_float(name, x)
    check_shape(name, x, (None, d_model))
    if x.shape[0] == 0:
        raise ValueError(f"{name} has batch 0; expected (batch >= 1, {d_model})")
    check_dtype(name, x, dtype)
