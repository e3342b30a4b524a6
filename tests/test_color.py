"""Tests for chromaflow.color: Lab conversions, the luminance rule, guided upsampling."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.color import rgb2lab

from chromaflow.color import (
    compose_rgb,
    gray_to_lightness,
    guided_upsample,
    lab_to_rgb,
    lightness_to_gray8,
    rgb_to_gray,
    rgb_to_lab,
)


def test_lab_round_trip_within_one_level() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    # Corners of the cube too: black, white, primaries, secondaries.
    corners = np.array(np.meshgrid([0, 255], [0, 255], [0, 255])).reshape(3, -1).T.astype(np.uint8)
    rgb[0, :8] = corners
    lab = rgb_to_lab(rgb)
    assert lab.dtype == np.float32 and lab.shape == rgb.shape
    assert lab[..., 0].min() >= 0.0 and lab[..., 0].max() <= 100.0 + 1e-3
    back = np.rint(lab_to_rgb(lab) * 255.0).astype(np.int16)
    assert np.abs(back - rgb.astype(np.int16)).max() <= 1


def test_rgb_to_lab_accepts_float_and_batches() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (3, 8, 10, 3), dtype=np.uint8)
    batch = rgb_to_lab(rgb)
    assert batch.shape == rgb.shape
    for i in range(3):
        np.testing.assert_allclose(batch[i], rgb_to_lab(rgb[i]), atol=1e-5)
    np.testing.assert_allclose(rgb_to_lab(rgb[0].astype(np.float32) / 255.0), batch[0], atol=1e-5)
    # Known values: white is L=100, a=b=0; pure red is about (53.2, 80.1, 67.2).
    lab = rgb_to_lab(np.array([[[255, 255, 255], [255, 0, 0]]], np.uint8))
    np.testing.assert_allclose(lab[0, 0], [100.0, 0.0, 0.0], atol=0.05)
    np.testing.assert_allclose(lab[0, 1], [53.24, 80.09, 67.20], atol=0.3)


def test_gray_to_lightness_matches_lab_of_neutral_pixels() -> None:
    g = np.arange(256, dtype=np.uint8).reshape(16, 16)
    neutral = np.repeat(g[..., None], 3, axis=2)
    light = gray_to_lightness(g)
    assert light.dtype == np.float32 and light.shape == g.shape
    np.testing.assert_allclose(light, rgb_to_lab(neutral)[..., 0], atol=1e-3)
    # and both are the CIE L* of the exact sRGB curve (skimage), up to OpenCV's
    # approximation of that curve in float RGB2Lab (about 0.19 L at most).
    np.testing.assert_allclose(light, rgb2lab(neutral / 255.0)[..., 0], atol=0.25)
    assert light[0, 0] == pytest.approx(0.0, abs=1e-4)
    assert light[-1, -1] == pytest.approx(100.0, abs=1e-3)
    assert np.all(np.diff(light.ravel()) > 0)
    # float input in [0, 1] gives the same result
    np.testing.assert_allclose(gray_to_lightness(g.astype(np.float32) / 255.0), light, atol=1e-3)
    # and back to 8-bit gray exactly
    back = lightness_to_gray8(light)
    assert back.dtype == np.uint8 and np.array_equal(back, g)


def test_rgb_to_gray_is_opencv_bt601() -> None:
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(rgb_to_gray(rgb), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    g = rgb[..., 0]
    assert rgb_to_gray(g) is g


def _gray_and_ab(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = 48, 64
    gray = rng.integers(0, 256, (h, w), dtype=np.uint8)
    # Near-black and near-white rows, where saturation must shrink most.
    gray[0] = np.arange(w) % 4  # 0..3
    gray[1] = 255 - np.arange(w) % 4  # 252..255
    ab = rng.uniform(-128.0, 127.0, (h, w, 2)).astype(np.float32)
    # Very saturated corners of the ab plane on some rows.
    extremes = np.array([[127, 127], [-128, 127], [127, -128], [-128, -128], [100, 0], [0, -110]], np.float32)
    ab[2:8] = extremes[:, None, :]
    ab[0, : len(extremes)] = extremes
    ab[1, : len(extremes)] = extremes
    return gray, ab


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compose_rgb_keeps_gray(seed: int) -> None:
    gray, ab = _gray_and_ab(seed)
    rgb = compose_rgb(gray, ab)
    assert rgb.dtype == np.uint8 and rgb.shape == gray.shape + (3,)
    diff = np.abs(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.int16) - gray.astype(np.int16))
    assert diff.max() <= 1
    # It is not keeping gray by dropping the colour: mid-gray pixels stay coloured.
    mid = (gray > 60) & (gray < 200)
    spread = rgb.max(axis=2).astype(int) - rgb.min(axis=2)
    assert spread[mid].mean() > 40


def test_compose_rgb_zero_chroma_is_exactly_gray() -> None:
    g = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    rgb = compose_rgb(g, np.zeros(g.shape + (2,), np.float32))
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], g)


def test_compose_rgb_hue_follows_ab() -> None:
    gray = np.full((4, 4), 120, np.uint8)
    red = compose_rgb(gray, np.broadcast_to(np.float32([60, 40]), (4, 4, 2)).copy())
    blue = compose_rgb(gray, np.broadcast_to(np.float32([20, -70]), (4, 4, 2)).copy())
    r, gg, b = red[0, 0].astype(int)
    assert r > gg and r > b
    r, gg, b = blue[0, 0].astype(int)
    assert b > r and b > gg


def test_compose_rgb_size_mismatch() -> None:
    with pytest.raises(ValueError):
        compose_rgb(np.zeros((4, 4), np.uint8), np.zeros((4, 5, 2), np.float32))


# ----------------------------------------------------------------- guided upsampling


def test_guided_upsample_constant_chroma_and_shape() -> None:
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (64, 96), dtype=np.uint8)
    ab_low = np.empty((16, 24, 2), np.float32)
    ab_low[..., 0], ab_low[..., 1] = 35.0, -20.0
    out = guided_upsample(ab_low, gray)
    assert out.shape == (64, 96, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 0], 35.0, atol=1e-3)
    np.testing.assert_allclose(out[..., 1], -20.0, atol=1e-3)
    # Same size in and out, and a single-channel input.
    same = guided_upsample(ab_low, gray[:16, :24])
    assert same.shape == (16, 24, 2)
    np.testing.assert_allclose(same, ab_low, atol=1e-3)
    one = guided_upsample(ab_low[..., 0], gray)
    assert one.shape == (64, 96, 1)


def test_guided_upsample_keeps_chroma_edge_on_luminance_edge() -> None:
    H, W, scale = 96, 128, 4
    edge = 61  # not on the low-resolution grid: the low-res pixel 15 straddles it
    rng = np.random.default_rng(4)
    gray = np.where(np.arange(W) < edge, 60, 190).astype(np.float32)[None, :].repeat(H, 0)
    gray = np.clip(gray + rng.normal(0, 1.5, gray.shape), 0, 255).astype(np.uint8)
    truth = np.empty((H, W, 2), np.float32)
    truth[:, :edge] = (50.0, 30.0)
    truth[:, edge:] = (-40.0, -60.0)
    ab_low = cv2.resize(truth, (W // scale, H // scale), interpolation=cv2.INTER_AREA)

    guided = guided_upsample(ab_low, gray)
    bilinear = cv2.resize(ab_low, (W, H), interpolation=cv2.INTER_LINEAR)
    band = slice(edge - 6, edge + 6)
    err_guided = np.abs(guided[:, band] - truth[:, band]).mean()
    err_bilinear = np.abs(bilinear[:, band] - truth[:, band]).mean()
    assert err_guided < 0.5 * err_bilinear
    # Right at the edge the guided chroma jumps; bilinear ramps over several pixels.
    jump_guided = np.abs(guided[:, edge, 0] - guided[:, edge - 1, 0]).mean()
    jump_bilinear = np.abs(bilinear[:, edge, 0] - bilinear[:, edge - 1, 0]).mean()
    assert jump_guided > 2 * jump_bilinear
    assert jump_guided > 40.0
    # Far from the edge both are right.
    np.testing.assert_allclose(guided[:, 10], truth[:, 10], atol=2.0)
    np.testing.assert_allclose(guided[:, W - 10], truth[:, W - 10], atol=2.0)
