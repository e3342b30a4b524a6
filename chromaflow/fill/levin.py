"""Colorization by optimization (Levin, Lischinski and Weiss, SIGGRAPH 2004).

Chroma is propagated between neighbouring pixels of similar luminance.  For
every pixel ``r`` the chroma ``U(r)`` should equal a weighted average of its
3x3 neighbours::

    U(r) - sum_s w_rs U(s) = 0,   w_rs ~ exp(-(Y(r) - Y(s))^2 / csig_r),  sum_s w_rs = 1

where ``Y = L / 100`` and ``csig_r`` follows the authors' reference code
(``getColorExact.m``): ``0.6 *`` the variance of ``Y`` in the window (centre
included), raised so that the closest neighbour keeps at least ``0.01`` of the
centre weight (``csig >= -min_s (Y(r) - Y(s))^2 / log 0.01``), with a floor of
``2e-6``.  Windows are clipped at the image border.

The paper pins hinted pixels with hard constraints; here a hint has a
confidence ``c`` in ``[0, 1]`` and enters as a soft, weighted term::

    minimise  ||(I - W) U||^2 + lam * sum_r c_r (U(r) - hint_r)^2

whose normal equations ``((I - W)^T (I - W) + lam C) U = lam C hint`` share
one sparse matrix for the two chroma channels: it is factorised once
(:func:`scipy.sparse.linalg.splu`) and both right-hand sides are solved with
it.  Finally the hints are kept where they are trusted:
``out = c * hint + (1 - c) * U``, so ``out == hint`` where ``c == 1``.

:class:`LevinFill` adds a fast approximation for large frames: the problem is
solved at a reduced resolution (at most ``max_pixels`` pixels) and the
solution is brought back with :func:`chromaflow.color.upsample.guided_upsample`
guided by the full-resolution lightness, before the same final blend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from chromaflow.color.upsample import guided_upsample
from chromaflow.fill.base import ChromaFill
from chromaflow.registry import register

__all__ = ["LevinFill", "LevinOptions", "levin_colorize"]

# Constants of the reference implementation (getColorExact.m).
_VAR_SCALE = 0.6
_MIN_NEIGHBOUR_WEIGHT = 0.01
_CSIG_FLOOR = 2e-6
# Every in-window neighbour weight is > 0 (csig >= 0.6 * var >= d^2 / 30, so
# w >= exp(-30) before normalisation): the neighbour graph is strongly
# connected, I - W has only the constants in its kernel, and the system is
# positive definite as soon as one pixel is hinted.  No regularisation is
# added: even a 1e-12 ridge visibly damps propagation along smooth gradients,
# where linear chroma ramps cost almost nothing.  The ridge below is only a
# fallback if the factorisation fails numerically.
_FALLBACK_RIDGE = 1e-9

_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def _validate(lightness: np.ndarray, ab: np.ndarray, confidence: np.ndarray, min_confidence: float):
    """Check shapes / dtypes / values; return float64 copies ``(L, ab, c)``.

    ``c`` is the confidence clipped to ``[0, 1]`` and set to 0 below
    ``min_confidence``; ``ab`` is set to 0 where ``c`` is 0 (it may hold
    anything there, NaN included).
    """
    arrays = {"lightness": lightness, "ab": ab, "confidence": confidence}
    for name, arr in arrays.items():
        if not isinstance(arr, np.ndarray):
            raise ValueError(f"{name} must be a numpy array, got {type(arr).__name__}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"{name} must have a floating dtype (float32 expected), got {arr.dtype}")
    if lightness.ndim != 2:
        raise ValueError(f"lightness must be (H, W), got shape {lightness.shape}")
    H, W = lightness.shape
    if ab.shape != (H, W, 2):
        raise ValueError(f"ab must be (H, W, 2) = {(H, W, 2)}, got shape {ab.shape}")
    if confidence.shape != (H, W):
        raise ValueError(f"confidence must be (H, W) = {(H, W)}, got shape {confidence.shape}")
    L = lightness.astype(np.float64)
    c = confidence.astype(np.float64)
    for name, arr in (("lightness", L), ("confidence", c)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    c = np.clip(c, 0.0, 1.0)
    if min_confidence > 0:
        c[c < min_confidence] = 0.0
    a = ab.astype(np.float64)
    a[c == 0] = 0.0
    if not np.isfinite(a).all():
        raise ValueError("ab contains NaN or infinite values where confidence >= min_confidence")
    return L, a, c


def _check_params(lam: float, min_confidence: float) -> None:
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam must be a finite positive number, got {lam}")
    if not (0.0 <= min_confidence < 1.0):
        raise ValueError(f"min_confidence must be in [0, 1), got {min_confidence}")


def _affinity_matrix(y: np.ndarray) -> sp.csr_matrix:
    """``I - W`` for the ``(H, W)`` intensity ``y`` in ``[0, 1]`` (N x N, N = H * W, CSR)."""
    H, W = y.shape
    N = H * W
    yp = np.pad(y, 1, mode="constant", constant_values=np.nan)
    # (8, H, W) neighbour values, NaN outside the image.
    nb = np.stack([yp[1 + dy : 1 + dy + H, 1 + dx : 1 + dx + W] for dy, dx in _OFFSETS])
    valid = ~np.isnan(nb)
    nbz = np.where(valid, nb, 0.0)
    count = valid.sum(axis=0) + 1.0  # window size, centre included
    mean = (nbz.sum(axis=0) + y) / count
    var = (np.where(valid, (nbz - mean) ** 2, 0.0).sum(axis=0) + (y - mean) ** 2) / count
    d2 = np.where(valid, (nbz - y) ** 2, np.inf)
    mgv = d2.min(axis=0)
    mgv = np.where(np.isfinite(mgv), mgv, 0.0)
    csig = np.maximum(_VAR_SCALE * var, -mgv / math.log(_MIN_NEIGHBOUR_WEIGHT))
    csig = np.maximum(csig, _CSIG_FLOOR)
    w = np.where(valid, np.exp(-d2 / csig), 0.0)
    wsum = w.sum(axis=0)
    w = w / np.where(wsum > 0, wsum, 1.0)

    idx = np.arange(N).reshape(H, W)
    idxp = np.pad(idx, 1, mode="constant", constant_values=-1)
    cols = np.stack([idxp[1 + dy : 1 + dy + H, 1 + dx : 1 + dx + W] for dy, dx in _OFFSETS])
    rows = np.broadcast_to(idx, cols.shape)
    keep = valid & (w > 0)
    r = np.concatenate([np.arange(N), rows[keep]])
    col = np.concatenate([np.arange(N), cols[keep]])
    data = np.concatenate([np.ones(N), -w[keep]])
    return sp.csr_matrix((data, (r, col)), shape=(N, N))


def _solve(y: np.ndarray, ab: np.ndarray, c: np.ndarray, lam: float) -> np.ndarray:
    """Minimiser ``U`` (``(H, W, 2)`` float64) of the soft-constrained energy; ``c`` already thresholded."""
    H, W = y.shape
    N = H * W
    A = _affinity_matrix(y)
    cw = lam * c.reshape(N)
    AtA = (A.T @ A).tocsc()
    rhs = cw[:, None] * ab.reshape(N, 2)
    for ridge in (0.0, _FALLBACK_RIDGE):
        M = (AtA + sp.diags(cw + ridge, format="csc")).tocsc()
        try:
            # M is symmetric positive definite: symmetric ordering, no pivoting
            # (about 4x faster than the default COLAMD ordering).
            lu = splu(M, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
            u = lu.solve(rhs)
        except RuntimeError:  # exactly singular factor
            continue
        if np.isfinite(u).all():
            return u.reshape(H, W, 2)
    raise RuntimeError("levin: the sparse system could not be solved")  # pragma: no cover


def levin_colorize(
    lightness: np.ndarray,
    ab: np.ndarray,
    confidence: np.ndarray,
    lam: float = 100.0,
    min_confidence: float = 0.05,
) -> np.ndarray:
    """Exact colorization by optimization (Levin et al. 2004) at full resolution.

    Args:
        lightness: ``(H, W)`` float Lab L in ``[0, 100]``.
        ab: ``(H, W, 2)`` float chroma hints (Lab ab, about ``[-128, 127]``);
            ignored (may even be NaN) where the confidence is below
            ``min_confidence``.
        confidence: ``(H, W)`` float in ``[0, 1]`` (clipped): weight of each
            hint in the soft constraint, and blend weight of the hint in the
            output.
        lam: weight of the hint term against the propagation term.
        min_confidence: confidences below it count as "no hint" (0).

    Returns:
        ``(H, W, 2)`` ``float32`` chroma: ``c * hint + (1 - c) * U`` with ``U``
        the solution, so it equals ``ab`` where ``confidence == 1``.  All zeros
        (gray) when no pixel is hinted; the solver is not called then, nor when
        every pixel has confidence 1.

    Raises:
        ValueError: wrong shapes, non-float dtypes, non-finite lightness,
            confidence or trusted hints, or invalid parameters.
    """
    _check_params(lam, min_confidence)
    L, a, c = _validate(lightness, ab, confidence, min_confidence)
    return _finish(_colorize_exact(L, a, c, lam), a, c)


def _colorize_exact(L: np.ndarray, a: np.ndarray, c: np.ndarray, lam: float) -> np.ndarray:
    """Raw solution ``U`` (float64); zeros without hints, the hints when all are certain."""
    if not (c > 0).any():
        return np.zeros(a.shape, np.float64)
    if (c >= 1.0).all():
        return a.copy()
    return _solve(L / 100.0, a, c, lam)


def _finish(u: np.ndarray, a: np.ndarray, c: np.ndarray) -> np.ndarray:
    cc = c[..., None]
    return (cc * a + (1.0 - cc) * u).astype(np.float32)


@dataclass(frozen=True)
class LevinOptions:
    """Options of the Levin fill step.

    Attributes:
        lam: weight of the hint term against the propagation term.
        max_pixels: frames larger than this are solved at a reduced size
            (at most this many pixels) and guided-upsampled (4,000: the
            setting the engine's benchmarks were measured with).
        min_confidence: hints under this confidence count as none.
    """

    lam: float = 100.0
    max_pixels: int = 4000
    min_confidence: float = 0.05

    def __post_init__(self) -> None:
        _check_params(self.lam, self.min_confidence)
        if int(self.max_pixels) < 1:
            raise ValueError(f"max_pixels must be >= 1, got {self.max_pixels}")


class LevinFill(ChromaFill):
    """Chroma completion by colorization by optimization (Levin et al., SIGGRAPH 2004).

    Frames with at most ``max_pixels`` pixels are solved exactly
    (:func:`levin_colorize`).  Larger frames are solved at a reduced size
    (``cv2.INTER_AREA``; hints averaged with their confidence as weights,
    ``resize(ab * c) / resize(c)``, confidence ``resize(c)``) and the solution
    is upsampled with :func:`~chromaflow.color.upsample.guided_upsample`
    following the full-resolution lightness (``L / 100``).  In both cases the
    output is ``c * hint + (1 - c) * solution`` at full resolution.

    Attributes:
        last_scale: after each :meth:`fill`, the ratio (solve size / frame
            size, per side) used: 1.0 for the exact path, < 1 for the reduced
            one, None when no solve was needed.
    """

    name = "levin"

    def __init__(self, lam: float = LevinOptions.lam, max_pixels: int = LevinOptions.max_pixels,
                 min_confidence: float = LevinOptions.min_confidence) -> None:
        _check_params(lam, min_confidence)
        if int(max_pixels) < 1:
            raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
        self.lam = float(lam)
        self.max_pixels = int(max_pixels)
        self.min_confidence = float(min_confidence)
        self.last_scale: float | None = None

    def solve_size(self, height: int, width: int) -> tuple[int, int]:
        """``(h, w)`` at which a ``(height, width)`` frame is solved (``h * w <= max_pixels``)."""
        if height * width <= self.max_pixels:
            return height, width
        s = math.sqrt(self.max_pixels / (height * width))
        h = max(1, min(height, int(height * s)))
        w = max(1, min(width, int(width * s)))
        while h * w > self.max_pixels:  # only for extreme aspect ratios
            if w > h:
                w -= 1
            else:
                h -= 1
        return h, w

    def fill(self, lightness: np.ndarray, ab: np.ndarray, confidence: np.ndarray) -> np.ndarray:
        """Complete a chroma map (see :meth:`ChromaFill.fill`).

        Args:
            lightness: ``(H, W)`` float Lab L in ``[0, 100]``.
            ab: ``(H, W, 2)`` float hints (about ``[-128, 127]``).
            confidence: ``(H, W)`` float in ``[0, 1]``; below
                ``min_confidence`` means no hint.

        Returns:
            ``(H, W, 2)`` ``float32`` chroma, equal to ``ab`` where
            ``confidence == 1``, zeros when nothing is hinted.
        """
        L, a, c = _validate(lightness, ab, confidence, self.min_confidence)
        H, W = L.shape
        if not (c > 0).any() or (c >= 1.0).all():
            self.last_scale = None
            return _finish(_colorize_exact(L, a, c, self.lam), a, c)
        h, w = self.solve_size(H, W)
        if (h, w) == (H, W):
            self.last_scale = 1.0
            return _finish(_solve(L / 100.0, a, c, self.lam), a, c)
        self.last_scale = math.sqrt((h * w) / (H * W))
        u = self._solve_reduced(L, a, c, h, w)
        return _finish(u, a, c)

    def _solve_reduced(self, L: np.ndarray, a: np.ndarray, c: np.ndarray, h: int, w: int) -> np.ndarray:
        def down(x: np.ndarray) -> np.ndarray:
            return cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA)

        L_lo = down(L)
        c_lo = down(c)
        num = down(a * c[..., None])
        safe = np.where(c_lo > 1e-12, c_lo, 1.0)
        a_lo = np.where(c_lo[..., None] > 1e-12, num / safe[..., None], 0.0)
        c_lo = np.where(c_lo > 1e-12, np.clip(c_lo, 0.0, 1.0), 0.0)
        # Thresholding was done at full resolution: a low-res pixel with any
        # hinted pixel under it keeps its (averaged, weaker) hint, so a lone
        # hint is not lost to the averaging.
        u_lo = _finish(_colorize_exact(L_lo, a_lo, c_lo, self.lam), a_lo, c_lo)
        guide = np.clip(L / 100.0, 0.0, 1.0).astype(np.float32)
        return guided_upsample(u_lo, guide).astype(np.float64)


@register("fill", "levin", options=LevinOptions,
          description="colorization by optimization (Levin et al. 2004): a sparse solve at reduced size + "
                      "guided upsampling (no weights; the default)")
def _make_levin(options: LevinOptions, runtime) -> LevinFill:
    return LevinFill(options.lam, options.max_pixels, options.min_confidence)
