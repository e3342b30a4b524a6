"""Reading publishers' checkpoint files into state dicts, and loading them strictly.

Networks in :mod:`chromaflow.models` keep the parameter names of their
official implementations, so the official files load with
``load_state_dict(strict=True)``.  The helpers here only read the file
(``torch.load`` with ``weights_only=True``: no code in a checkpoint runs, or
safetensors), unwrap the containers publishers use (``{"params": ...}`` from
BasicSR, ``{"state_dict": ...}``, ``{"model": ...}``, a ``module.`` prefix from
``nn.DataParallel``) and turn every failure into a one-line ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = ["read_state_dict", "load_strict"]

_CONTAINERS = ("params_ema", "params", "state_dict", "model", "net_g")


def read_state_dict(path: str | Path, label: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (``.pth``/``.pt``/``.ckpt`` or ``.safetensors``).

    Args:
        path: the file.
        label: what it should be, for messages (``"DDColor checkpoint"``).

    Raises:
        ValueError: missing, unreadable (corrupt, truncated, not a checkpoint)
            or holding no state dict; one line naming the file.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"{label} not found: {p}")
    try:
        if p.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(p), device="cpu")
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every reader error becomes one line
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise ValueError(f"cannot read {label} {p}: {first[:200]}") from None
    if isinstance(obj, Mapping):
        for key in _CONTAINERS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{p} is not a {label} (no state dict of tensors inside)")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def load_strict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    label: str,
    ignore: Iterable[str] = (),
) -> nn.Module:
    """``module.load_state_dict(state_dict, strict=True)`` with a one-line error.

    Args:
        module: the network, built with the architecture the file describes.
        state_dict: its tensors.
        label: for messages (``"/path/x.pth (DDColor-L)"``).
        ignore: keys the publisher's file carries that the official network
            does not have either (they are dropped, not loaded: e.g. DDColor's
            commented-out ``encoder.arch.head_cls``).

    Raises:
        ValueError: missing or unexpected keys, or a shape mismatch.
    """
    sd = {k: v for k, v in state_dict.items() if k not in set(ignore)}
    # BatchNorm's step counter is unused at inference; older files lack it
    for k, v in module.state_dict().items():
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = v
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
                parts.append(f"{what}: {', '.join(keys[:3])}{more}")
        raise ValueError(f"{label} does not match the expected layout; " + "; ".join(parts))
    module.load_state_dict(sd, strict=True)
    return module
