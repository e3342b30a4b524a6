"""Saving and loading :class:`ChromaUNet` weights as safetensors.

A weights file holds the tensors in float16 and, in its metadata, the
network config (``config``, JSON), the ``kind`` (``diffusion`` or
``regression``) and free-form training facts.  The shipped models live in
``chromaflow/data/models/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from chromaflow.errors import InputError
from chromaflow.models.chroma_unet import ChromaUNet, ChromaUNetConfig

#: Folder of the weights shipped inside the package.
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "models"
#: Shipped weights by kind.
SHIPPED = {"diffusion": SHIPPED_DIR / "chroma_diffusion.safetensors",
           "regression": SHIPPED_DIR / "chroma_regression.safetensors"}


def save_model(model: ChromaUNet, path: str | Path, kind: str, extra: dict[str, str] | None = None) -> None:
    """Write ``model``'s weights (float16) with its config; atomic (temporary name, then rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().to(torch.float16).cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"config": json.dumps(model.config.to_dict()), "kind": kind, **(extra or {})}
    tmp = path.with_name(path.name + ".part")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def load_model(path: str | Path) -> tuple[ChromaUNet, dict[str, str]]:
    """Read a weights file; returns the network (float32, eval mode) and its metadata."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"model weights not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k).float() for k in f.keys()}
    except Exception as exc:  # safetensors raises several types for bad files
        raise InputError(f"not a chromaflow model file: {path} ({exc})") from None
    if "config" not in meta:
        raise InputError(f"not a chromaflow model file (no config in metadata): {path}")
    model = ChromaUNet(ChromaUNetConfig.from_dict(json.loads(meta["config"])))
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return model, meta


def average_models(paths: list[str | Path], shares: list[float]) -> tuple[ChromaUNet, dict[str, str]]:
    """The weighted mean of networks fine-tuned from one starting point (a "model soup").

    Networks that started from the same weights stay close enough in parameter
    space that their weighted mean is itself a good network, usually better than
    each (Wortsman et al. 2022); unlike an ensemble it costs nothing at inference.
    The chroma-bin prior (a statistic of the data, not a trained tensor) is the
    first file's.

    Args:
        paths: two weights files or more, of the same config and kind.
        shares: one non-negative share per file, adding up to 1.

    Returns:
        The mean network and the first file's metadata.

    Raises:
        InputError: fewer than two files, shares that do not match or add up,
            or files of different networks.
    """
    if len(paths) < 2 or len(paths) != len(shares):
        raise InputError("give two weights files or more, and one share per file")
    if min(shares) < 0 or abs(sum(shares) - 1.0) > 1e-6:
        raise InputError(f"the shares must be >= 0 and add up to 1, not {sum(shares):g}")
    loaded = [load_model(p) for p in paths]
    base, meta = loaded[0]
    for p, (net, m) in zip(paths[1:], loaded[1:]):
        if net.config != base.config or m.get("kind") != meta.get("kind"):
            raise InputError(f"{p} is not the same network as {paths[0]} (config or kind differ)")
    states = [net.state_dict() for net, _ in loaded]
    mean = {k: sum(w * s[k] for w, s in zip(shares, states)) for k in states[0]}
    if "bin_prior" in mean:
        mean["bin_prior"] = states[0]["bin_prior"]
    base.load_state_dict(mean)
    return base, meta
