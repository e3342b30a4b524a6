"""Tests for chromaflow.fill.levin: colorization by optimization (Levin et al. 2004)."""

from __future__ import annotations

import time

import numpy as np
import pytest

import chromaflow.fill.levin as levin_mod
from chromaflow.fill import ChromaFill, LevinFill, levin_colorize

LEFT_AB = np.array([40.0, 25.0], np.float32)
RIGHT_AB = np.array([-30.0, 15.0], np.float32)


def two_regions(h: int, w: int, seed: int = 0, blob: int = 2):
    """Left half L=30, right half L=70 (noise sigma 1); one hint blob per half.

    Returns (L, ab, confidence, edge column).
    """
    rng = np.random.default_rng(seed)
    edge = w // 2
    L = np.full((h, w), 30.0, np.float32)
    L[:, edge:] = 70.0
    L += rng.normal(0.0, 1.0, (h, w)).astype(np.float32)
    ab = np.zeros((h, w, 2), np.float32)
    conf = np.zeros((h, w), np.float32)
    cy, lx, rx = h // 3, w // 8, w - w // 8
    conf[cy : cy + blob, lx : lx + blob] = 1.0
    ab[cy : cy + blob, lx : lx + blob] = LEFT_AB
    conf[2 * cy : 2 * cy + blob, rx - blob : rx] = 1.0
    ab[2 * cy : 2 * cy + blob, rx - blob : rx] = RIGHT_AB
    # Garbage where nothing is trusted: must be ignored.
    ab[conf == 0] = rng.uniform(-100, 100, (int((conf == 0).sum()), 2)).astype(np.float32)
    return L, ab, conf, edge


def region_errors(out: np.ndarray, edge: int, margin: int) -> tuple[float, float]:
    left = out[:, : edge - margin].reshape(-1, 2)
    right = out[:, edge + margin :].reshape(-1, 2)
    e_left = float(np.linalg.norm(left - LEFT_AB, axis=1).mean())
    e_right = float(np.linalg.norm(right - RIGHT_AB, axis=1).mean())
    return e_left, e_right


def test_is_a_chroma_fill() -> None:
    f = LevinFill()
    assert isinstance(f, ChromaFill)
    assert f.name == "levin"


def test_two_regions_each_gets_its_own_colour_without_bleeding() -> None:
    L, ab, conf, edge = two_regions(48, 96)
    out = LevinFill().fill(L, ab, conf)
    assert out.shape == (48, 96, 2) and out.dtype == np.float32
    e_left, e_right = region_errors(out, edge, margin=3)
    assert e_left < 3.0 and e_right < 3.0, (e_left, e_right)
    # No bleeding: the columns right next to the edge keep their own side's colour.
    near_left = out[:, edge - 1]
    near_right = out[:, edge]
    assert np.linalg.norm(near_left - LEFT_AB, axis=1).max() < 10.0
    assert np.linalg.norm(near_right - RIGHT_AB, axis=1).max() < 10.0


def test_hints_kept_where_confidence_is_one() -> None:
    rng = np.random.default_rng(3)
    h, w = 32, 40
    L = rng.uniform(0, 100, (h, w)).astype(np.float32)
    ab = rng.uniform(-80, 80, (h, w, 2)).astype(np.float32)
    conf = rng.uniform(0, 1, (h, w)).astype(np.float32)
    conf[rng.random((h, w)) < 0.2] = 1.0
    out = levin_colorize(L, ab, conf)
    sure = conf == 1.0
    np.testing.assert_allclose(out[sure], ab[sure], atol=1e-3)
    # Partly trusted hints pull the output towards them but are not copied.
    assert not np.allclose(out[~sure], ab[~sure], atol=1e-3)


def test_smooth_gradient_single_hint_propagates_far() -> None:
    h, w = 40, 120
    L = np.tile(np.linspace(10.0, 90.0, w, dtype=np.float32), (h, 1))
    ab = np.zeros((h, w, 2), np.float32)
    conf = np.zeros((h, w), np.float32)
    ab[2, 2] = (25.0, -35.0)
    conf[2, 2] = 1.0
    out = levin_colorize(L, ab, conf)
    err = np.linalg.norm(out - np.array([25.0, -35.0], np.float32), axis=2)
    assert err.max() < 2.0, err.max()
    # The opposite corner, ~120 pixels away.
    assert err[-1, -1] < 2.0


def test_no_hints_gives_zeros_without_solving(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("solver must not be called")

    monkeypatch.setattr(levin_mod, "_solve", boom)
    monkeypatch.setattr(levin_mod, "splu", boom)
    rng = np.random.default_rng(1)
    L = rng.uniform(0, 100, (20, 30)).astype(np.float32)
    ab = rng.uniform(-50, 50, (20, 30, 2)).astype(np.float32)
    # Below the default 0.05 threshold: counts as no hint.
    conf = np.full((20, 30), 0.04, np.float32)
    for out in (levin_colorize(L, ab, conf), LevinFill().fill(L, ab, conf), LevinFill(max_pixels=50).fill(L, ab, conf)):
        assert out.shape == (20, 30, 2) and out.dtype == np.float32
        assert not out.any()


def test_all_hinted_returns_hints(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    L = rng.uniform(0, 100, (12, 17)).astype(np.float32)
    ab = rng.uniform(-90, 90, (12, 17, 2)).astype(np.float32)
    conf = np.ones((12, 17), np.float32)
    np.testing.assert_array_equal(levin_colorize(L, ab, conf), ab)
    np.testing.assert_array_equal(LevinFill(max_pixels=10).fill(L, ab, conf), ab)


def test_min_confidence_threshold_ignores_weak_hints() -> None:
    L = np.full((10, 10), 50.0, np.float32)
    ab = np.zeros((10, 10, 2), np.float32)
    conf = np.zeros((10, 10), np.float32)
    ab[0, 0], conf[0, 0] = (20.0, 20.0), 1.0
    ab[9, 9], conf[9, 9] = (-100.0, -100.0), 0.03  # untrusted, must not matter
    ab[5, 5] = np.nan  # confidence 0: ignored, even NaN
    out = LevinFill(min_confidence=0.05).fill(L, ab, conf)
    np.testing.assert_allclose(out, np.broadcast_to([20.0, 20.0], out.shape), atol=0.5)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 2)])
def test_tiny_images(shape: tuple[int, int]) -> None:
    h, w = shape
    L = np.linspace(20, 80, h * w, dtype=np.float32).reshape(h, w)
    ab = np.zeros((h, w, 2), np.float32)
    conf = np.zeros((h, w), np.float32)
    ab[0, 0], conf[0, 0] = (10.0, -20.0), 1.0
    for f in (LevinFill(), LevinFill(max_pixels=2)):
        out = f.fill(L, ab, conf)
        assert out.shape == (h, w, 2) and np.isfinite(out).all()
        np.testing.assert_allclose(out[0, 0], (10.0, -20.0), atol=1e-3)
    out = levin_colorize(L, ab, conf)
    np.testing.assert_allclose(out, np.broadcast_to([10.0, -20.0], out.shape), atol=0.5)
    # A partial hint on a single pixel: finite, between 0 and the hint.
    one = levin_colorize(L[:1, :1], ab[:1, :1], np.full((1, 1), 0.5, np.float32))
    assert np.isfinite(one).all() and 0.0 < one[0, 0, 0] <= 10.0


def test_fast_path_is_used_and_keeps_region_colours(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = levin_mod.guided_upsample

    def spy(ab_low, gray, *args, **kwargs):
        calls.append((ab_low.shape, gray.shape))
        return real(ab_low, gray, *args, **kwargs)

    monkeypatch.setattr(levin_mod, "guided_upsample", spy)
    L, ab, conf, edge = two_regions(300, 400, seed=5, blob=4)
    f = LevinFill()  # default max_pixels: 400x300 = 120k pixels > 40k
    t0 = time.perf_counter()
    out = f.fill(L, ab, conf)
    print(f"\nLevinFill fast path 400x300: {time.perf_counter() - t0:.3f} s")
    assert len(calls) == 1
    (h, w, c), gray_shape = calls[0]
    assert gray_shape == (300, 400) and c == 2 and h * w <= f.max_pixels
    assert f.last_scale is not None and f.last_scale < 1.0
    assert out.shape == (300, 400, 2) and out.dtype == np.float32
    e_left, e_right = region_errors(out, edge, margin=4)
    assert e_left < 3.0 and e_right < 3.0, (e_left, e_right)
    sure = conf == 1.0
    np.testing.assert_allclose(out[sure], ab[sure], atol=1e-3)


def test_exact_path_does_not_upsample(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("guided_upsample must not be called for small frames")

    monkeypatch.setattr(levin_mod, "guided_upsample", boom)
    L, ab, conf, _ = two_regions(20, 30)
    f = LevinFill()
    out = f.fill(L, ab, conf)
    assert f.last_scale == 1.0
    np.testing.assert_array_equal(out, levin_colorize(L, ab, conf))


def test_deterministic() -> None:
    L, ab, conf, _ = two_regions(30, 50, seed=7)
    rng = np.random.default_rng(8)
    conf = np.where(rng.random(conf.shape) < 0.1, rng.uniform(0.1, 1.0, conf.shape), conf).astype(np.float32)
    for f in (LevinFill(), LevinFill(max_pixels=400)):
        a = f.fill(L, ab, conf)
        b = f.fill(L.copy(), ab.copy(), conf.copy())
        np.testing.assert_array_equal(a, b)


def test_input_validation() -> None:
    L = np.zeros((4, 5), np.float32)
    ab = np.zeros((4, 5, 2), np.float32)
    c = np.zeros((4, 5), np.float32)
    f = LevinFill()
    with pytest.raises(ValueError, match="lightness"):
        f.fill(np.zeros((4, 5, 1), np.float32), ab, c)
    with pytest.raises(ValueError, match="ab"):
        f.fill(L, np.zeros((4, 5, 3), np.float32), c)
    with pytest.raises(ValueError, match="confidence"):
        f.fill(L, ab, np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        f.fill(L.astype(np.uint8), ab, c)
    with pytest.raises(ValueError, match="dtype"):
        levin_colorize(L, ab, c.astype(bool))
    with pytest.raises(ValueError, match="NaN"):
        f.fill(L, ab, np.full((4, 5), np.nan, np.float32))
    with pytest.raises(ValueError, match="ab contains NaN"):
        f.fill(L, np.full((4, 5, 2), np.nan, np.float32), np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match="numpy"):
        f.fill(L.tolist(), ab, c)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lam"):
        LevinFill(lam=0.0)
    with pytest.raises(ValueError, match="max_pixels"):
        LevinFill(max_pixels=0)
    with pytest.raises(ValueError, match="min_confidence"):
        levin_colorize(L, ab, c, min_confidence=1.5)
