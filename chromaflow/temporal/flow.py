"""Dense optical flow: the :class:`FlowEstimator` interface, OpenCV's DIS
(Kroeger et al. 2016) and RAFT (Teed & Deng 2020, from a local checkpoint).

Convention (OpenCV's ``calc(prev=src, next=dst)``): the returned flow ``f`` is
a ``float32`` array of shape ``(H, W, 2)`` holding ``(dx, dy)`` in pixels such
that ``src(x) ~ dst(x + f(x))``.  Hence ``backward_warp(dst, f) ~ src``
(see :mod:`chromaflow.temporal.warp`).

Every estimator here follows that convention.  :class:`RAFTFlow` reads its
weights from a local file given by the user; nothing is ever downloaded, and
torch is imported only when a RAFT estimator is built.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from chromaflow.registry import register

#: Preset name -> OpenCV DIS preset constant.
PRESETS: dict[str, int] = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def _check_gray_pair(src: np.ndarray, dst: np.ndarray) -> None:
    for name, a in (("src", src), ("dst", dst)):
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 2:
            raise ValueError(f"{name} must be a uint8 (H, W) gray image")
    if src.shape != dst.shape:
        raise ValueError(f"src and dst differ in size: {src.shape} vs {dst.shape}")


class FlowEstimator(ABC):
    """Dense optical flow between two gray frames.

    Subclasses set :attr:`name` and implement :meth:`__call__`; :meth:`pair`
    may be overridden to compute both directions at once.
    """

    #: Short identifier of the method (``"dis"``, ``"raft"``, ...).
    name: str = "flow"

    @abstractmethod
    def __call__(self, src_gray: np.ndarray, dst_gray: np.ndarray) -> np.ndarray:
        """Flow from ``src_gray`` to ``dst_gray``.

        Args:
            src_gray, dst_gray: ``uint8`` ``(H, W)`` gray frames of equal size.

        Returns:
            ``float32`` ``(H, W, 2)`` flow ``(dx, dy)`` in pixels with
            ``src(x) ~ dst(x + flow(x))``.
        """

    def pair(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(flow_ab, flow_ba)``: the flows from ``a`` to ``b`` and from ``b`` to ``a``."""
        return self(a, b), self(b, a)


def _scaled_size(h: int, w: int, max_side: int | None) -> tuple[int, int]:
    """``(sh, sw)``: working size with the longer side at most ``max_side`` (as DISFlow)."""
    if max_side is None or max(h, w) <= max_side:
        return h, w
    scale = max_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def _resize_flow(small: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of a ``(sh, sw, 2)`` flow to ``(h, w, 2)``, vectors rescaled per axis."""
    sh, sw = small.shape[:2]
    if (sh, sw) == (h, w):
        return np.ascontiguousarray(small, dtype=np.float32)
    flow = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    flow[..., 0] *= w / sw
    flow[..., 1] *= h / sh
    return flow


class DISFlow(FlowEstimator):
    """Reusable DIS optical-flow estimator (``name = "dis"``).

    Args:
        preset: ``"ultrafast"``, ``"fast"`` or ``"medium"``.
        max_side: if given, flow is computed on copies downscaled (``INTER_AREA``)
            so that the longer side is at most ``max_side`` pixels, then resized
            back bilinearly with vectors multiplied by the per-axis scale.

    Calling the object is deterministic for identical inputs.
    """

    name = "dis"

    def __init__(self, preset: str = "medium", max_side: int | None = None) -> None:
        key = preset.lower()
        if key not in PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}; choose from {sorted(PRESETS)}")
        if max_side is not None and int(max_side) < 8:
            raise ValueError("max_side must be at least 8 pixels")
        self.preset = key
        self.max_side = None if max_side is None else int(max_side)
        self._dis = cv2.DISOpticalFlow_create(PRESETS[key])

    def __call__(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Flow from ``src`` to ``dst``.

        Args:
            src, dst: ``uint8`` ``(H, W)`` gray frames of equal size.

        Returns:
            ``float32`` ``(H, W, 2)`` flow ``(dx, dy)`` in pixels of the input
            resolution with ``src(x) ~ dst(x + flow(x))``.
        """
        _check_gray_pair(src, dst)
        h, w = src.shape
        scale = 1.0
        if self.max_side is not None and max(h, w) > self.max_side:
            scale = self.max_side / max(h, w)
        if scale == 1.0:
            flow = self._dis.calc(np.ascontiguousarray(src), np.ascontiguousarray(dst), None)
            return np.ascontiguousarray(flow, dtype=np.float32)
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        s = cv2.resize(src, (sw, sh), interpolation=cv2.INTER_AREA)
        d = cv2.resize(dst, (sw, sh), interpolation=cv2.INTER_AREA)
        small = self._dis.calc(s, d, None)
        flow = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        flow[..., 0] *= w / sw
        flow[..., 1] *= h / sh
        return flow


def dis_flow(
    src_gray: np.ndarray,
    dst_gray: np.ndarray,
    preset: str = "medium",
    max_side: int | None = None,
) -> np.ndarray:
    """One-shot DIS flow from ``src_gray`` to ``dst_gray``.

    Args:
        src_gray, dst_gray: ``uint8`` ``(H, W)`` gray frames of equal size.
        preset: ``"ultrafast"``, ``"fast"`` or ``"medium"``.
        max_side: optional working-resolution cap on the longer side (pixels).

    Returns:
        ``float32`` ``(H, W, 2)`` flow with ``src(x) ~ dst(x + flow(x))``.
        Use :class:`DISFlow` to reuse the OpenCV object across many pairs.
    """
    return DISFlow(preset, max_side)(src_gray, dst_gray)


class RAFTFlow(FlowEstimator):
    """RAFT optical flow from a local checkpoint (``name = "raft"``).

    Args:
        weights: path of a RAFT checkpoint: the official ``raft-things.pth``,
            ``raft-sintel.pth``, ``raft-kitti.pth`` or ``raft-small.pth`` (plain
            state dicts, ``module.`` prefix optional).  Read with
            ``torch.load(weights_only=True)``; nothing is ever downloaded.
        iters: number of recurrent refinement iterations (official default 12;
            the official evaluation uses 24 on Sintel and 32 on Sintel / KITTI
            submissions).
        max_side: if given, flow is computed on copies downscaled (``INTER_AREA``)
            so that the longer side is at most ``max_side`` pixels, then resized
            back bilinearly with vectors scaled per axis (as :class:`DISFlow`).
        small: RAFT-small (``True``) or full RAFT (``False``); ``None`` detects
            it from the checkpoint.
        device: torch device string, e.g. ``"cpu"`` or ``"cuda"``.

    Gray frames are replicated to three channels; images are padded by edge
    replication to a multiple of 8 (centred, like the official ``InputPadder``)
    and the flow is cropped back.  Inference runs in eval mode under
    ``torch.no_grad``; on CPU, repeated calls on identical inputs give identical
    results.  :meth:`pair` runs both directions as one batch of two.

    Raises:
        ValueError: missing or unreadable checkpoint, or one that does not
            match the requested variant; bad ``iters`` / ``max_side``.
    """

    name = "raft"

    def __init__(
        self,
        weights: str | Path,
        iters: int = 12,
        max_side: int | None = 512,
        small: bool | None = None,
        device: str = "cpu",
    ) -> None:
        if int(iters) < 1:
            raise ValueError("iters must be at least 1")
        if max_side is not None and int(max_side) < 8:
            raise ValueError("max_side must be at least 8 pixels")
        import torch

        from chromaflow.models.raft import load_raft

        self.weights = Path(weights)
        self.iters = int(iters)
        self.max_side = None if max_side is None else int(max_side)
        self.device = torch.device(device)
        self.model = load_raft(self.weights, small=small, device=self.device)
        self.small = self.model.small

    def __repr__(self) -> str:
        return (
            f"RAFTFlow({str(self.weights)!r}, iters={self.iters}, max_side={self.max_side}, "
            f"small={self.small}, device={str(self.device)!r})"
        )

    def _flows(self, srcs: list[np.ndarray], dsts: list[np.ndarray]) -> list[np.ndarray]:
        """Flows ``srcs[i] -> dsts[i]`` (all of one size) computed as one batch."""
        import torch
        import torch.nn.functional as F

        h, w = srcs[0].shape
        sh, sw = _scaled_size(h, w, self.max_side)

        def prep(frames: list[np.ndarray]) -> torch.Tensor:
            if (sh, sw) != (h, w):
                frames = [cv2.resize(f, (sw, sh), interpolation=cv2.INTER_AREA) for f in frames]
            x = torch.from_numpy(np.stack(frames).astype(np.float32))  # (N, sh, sw)
            return x[:, None].expand(-1, 3, -1, -1).to(self.device)

        pad_h, pad_w = (-sh) % 8, (-sw) % 8
        pad = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        with torch.no_grad():
            im1 = F.pad(prep(srcs), pad, mode="replicate")
            im2 = F.pad(prep(dsts), pad, mode="replicate")
            flow = self.model(im1, im2, iters=self.iters)
            flow = flow[:, :, pad[2] : pad[2] + sh, pad[0] : pad[0] + sw]
            out = flow.permute(0, 2, 3, 1).float().cpu().numpy()
        return [_resize_flow(np.ascontiguousarray(f), h, w) for f in out]

    def __call__(self, src_gray: np.ndarray, dst_gray: np.ndarray) -> np.ndarray:
        """Flow from ``src_gray`` to ``dst_gray`` (see :meth:`FlowEstimator.__call__`)."""
        _check_gray_pair(src_gray, dst_gray)
        return self._flows([src_gray], [dst_gray])[0]

    def pair(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(flow_ab, flow_ba)`` computed as one batch of two."""
        _check_gray_pair(a, b)
        ab, ba = self._flows([a, b], [b, a])
        return ab, ba


_RAFT_SUFFIXES = (".pth", ".pt")


@dataclass(frozen=True)
class DISOptions:
    """Options of the DIS flow.

    Attributes:
        preset: ``ultrafast``, ``fast`` or ``medium``.
        max_side: compute the flow on copies with the longer side at most this
            (pixels); unset: at the engine's working resolution.
    """

    preset: str = "medium"
    max_side: int | None = None

    def __post_init__(self) -> None:
        if self.preset.lower() not in PRESETS:
            raise ValueError(f"unknown DIS preset {self.preset!r}; choose from {', '.join(sorted(PRESETS))}")


@dataclass(frozen=True)
class RAFTOptions:
    """Options of the RAFT flow.

    Attributes:
        weights: path of an official RAFT checkpoint (``raft-things.pth``,
            ``raft-small.pth``, ...); nothing is downloaded.
        iters: recurrent refinement iterations (official default 12).
        max_side: compute the flow on copies with the longer side at most this (pixels).
        small: RAFT-small (true) or full RAFT (false); unset: read from the checkpoint.
    """

    weights: str | None = None
    iters: int = 12
    max_side: int | None = 512
    small: bool | None = None


def _raft_check(options: RAFTOptions) -> str | None:
    if options.weights is None:
        return "give the checkpoint: --flow path/to/raft-things.pth (or [flow.raft] weights in the config)"
    if not Path(options.weights).expanduser().is_file():
        return f"RAFT checkpoint not found: {options.weights}"
    return None


@register("flow", "dis", options=DISOptions,
          description="OpenCV DIS optical flow (Kroeger et al. 2016), no weights (the default)")
def _make_dis(options: DISOptions, runtime) -> DISFlow:
    return DISFlow(options.preset, options.max_side)


@register("flow", "raft", options=RAFTOptions, packages=("torch",), check=_raft_check, licence="BSD-3-Clause",
          description="RAFT (Teed & Deng 2020) from an official checkpoint you have (nothing is downloaded)")
def _make_raft(options: RAFTOptions, runtime) -> RAFTFlow:
    reason = _raft_check(options)
    if reason:
        raise ValueError(reason)
    return RAFTFlow(Path(options.weights).expanduser(), iters=options.iters, max_side=options.max_side,
                    small=options.small, device=str(runtime.device))


def parse_flow_spec(spec: str | os.PathLike) -> tuple[str, object | None]:
    """``(backend name, options or None)`` for a ``--flow`` value.

    ``"dis"`` and ``"dis:<preset>"`` give DIS with that preset, a path ending
    in ``.pth`` / ``.pt`` (or ``"raft:PATH"``) gives RAFT with that
    checkpoint; any other text is taken as a registered flow backend's name
    (its options then come from the configuration).

    Raises:
        ValueError: an unknown DIS preset.
    """
    text = os.fspath(spec).strip()
    key = text.lower()
    if key.startswith("dis:"):
        return "dis", DISOptions(preset=key[4:])
    path_text = text[5:] if key.startswith("raft:") else text
    if key.startswith("raft:") or path_text.lower().endswith(_RAFT_SUFFIXES):
        return "raft", RAFTOptions(weights=str(Path(path_text).expanduser()))
    return text, None


def load_flow_estimator(spec: str | os.PathLike, **kwargs) -> FlowEstimator:
    """Build a flow estimator from a short spec (see :func:`parse_flow_spec`), on the CPU.

    Args:
        spec: ``"dis"``, ``"dis:ultrafast"``, ``"dis:fast"``, ``"dis:medium"``,
            or the path of a local RAFT checkpoint (``.pth`` / ``.pt``,
            optionally written ``"raft:PATH"``).
        **kwargs: passed to the estimator's constructor (e.g. ``max_side``;
            ``iters`` / ``small`` / ``device`` for RAFT).

    Raises:
        ValueError: unknown spec or DIS preset, or a missing / invalid
            checkpoint file (one-line message).
    """
    name, options = parse_flow_spec(spec)
    if name.lower() == "dis":
        return DISFlow(options.preset if options is not None else "medium", **kwargs)
    if name == "raft" and options is not None:
        path = Path(options.weights)
        if not path.is_file():
            raise ValueError(f"RAFT checkpoint not found: {path}")
        return RAFTFlow(path, **kwargs)
    raise ValueError(
        f"unknown flow estimator {os.fspath(spec)!r}; use 'dis', 'dis:<preset>' "
        f"(presets: {', '.join(sorted(PRESETS))}) or a RAFT checkpoint path (.pth)"
    )
