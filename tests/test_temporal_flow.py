"""Tests for chromaflow.temporal: DIS flow, backward warping, occlusion masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from chromaflow.temporal import (
    DISFlow,
    backward_warp,
    dis_flow,
    forward_backward_occlusion,
    valid_mask,
)

H, W = 64, 80


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth-plus-fine random texture, uint8 (h, w), values well inside [0, 255]."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(rng.random((h // 4, w // 4)).astype(np.float32), (w, h),
                        interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 1.0)
    return np.clip((0.6 * coarse + 0.6 * fine - 0.1) * 255, 0, 255).astype(np.uint8)


def shifted_pair(dx: int, dy: int, pad: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """(src, dst) crops of one texture with src(x) = dst(x + (dx, dy))."""
    big = texture(H + 2 * pad, W + 2 * pad)
    src = big[pad : pad + H, pad : pad + W]
    dst = big[pad - dy : pad - dy + H, pad - dx : pad - dx + W]
    return np.ascontiguousarray(src), np.ascontiguousarray(dst)


@pytest.mark.parametrize("preset", ["ultrafast", "fast", "medium"])
def test_dis_flow_recovers_translation(preset: str) -> None:
    src, dst = shifted_pair(dx=3, dy=-2)
    flow = dis_flow(src, dst, preset=preset)
    assert flow.shape == (H, W, 2) and flow.dtype == np.float32
    assert abs(np.median(flow[..., 0]) - 3) < 0.5
    assert abs(np.median(flow[..., 1]) + 2) < 0.5
    # Convention check: warping dst by the flow reproduces src in the interior.
    warped = backward_warp(dst, flow)
    inner = (slice(8, -8), slice(8, -8))
    assert np.mean(np.abs(warped[inner] - src[inner].astype(np.float32))) < 3.0


def test_dis_flow_max_side_scales_vectors_back() -> None:
    src, dst = shifted_pair(dx=4, dy=2)
    flow = dis_flow(src, dst, max_side=40)
    assert flow.shape == (H, W, 2) and flow.dtype == np.float32
    assert abs(np.median(flow[..., 0]) - 4) < 0.5
    assert abs(np.median(flow[..., 1]) - 2) < 0.5


def test_dis_flow_deterministic_and_reusable() -> None:
    src, dst = shifted_pair(dx=1, dy=1)
    est = DISFlow("medium")
    a = est(src, dst)
    b = est(dst, src)  # reuse on another pair
    c = est(src, dst)
    assert np.array_equal(a, c)
    assert np.array_equal(a, dis_flow(src, dst))
    assert abs(np.median(b[..., 0]) + 1) < 0.5


def test_dis_flow_rejects_bad_inputs() -> None:
    src, dst = shifted_pair(1, 1)
    with pytest.raises(ValueError):
        dis_flow(src, dst[:-1])
    with pytest.raises(ValueError):
        dis_flow(src.astype(np.float32), dst)
    with pytest.raises(ValueError):
        dis_flow(np.dstack([src] * 3), np.dstack([dst] * 3))
    with pytest.raises(ValueError):
        DISFlow("slow")


@pytest.mark.parametrize("channels", [None, 1, 3, 6])
def test_backward_warp_integer_flow_equals_roll(channels: int | None) -> None:
    rng = np.random.default_rng(1)
    shape = (H, W) if channels is None else (H, W, channels)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    dx, dy = 3, -2
    flow = np.zeros((H, W, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    out = backward_warp(img, flow)
    assert out.dtype == np.float32 and out.shape == img.shape
    # out[y, x] = img[y + dy, x + dx] == np.roll(img, (-dy, -dx))[y, x]
    rolled = np.roll(img, shift=(-dy, -dx), axis=(0, 1)).astype(np.float32)
    inner = (slice(-dy, H), slice(0, W - dx))
    np.testing.assert_array_equal(out[inner], rolled[inner])
    # Border replicate: the last columns repeat the image's last column.
    np.testing.assert_array_equal(out[-dy:, W - 1], img[:H + dy, W - 1].astype(np.float32))


def test_backward_warp_half_pixel_is_bilinear() -> None:
    img = np.tile(np.arange(W, dtype=np.float32) * 2.0, (H, 1))
    flow = np.zeros((H, W, 2), np.float32)
    flow[..., 0] = 0.5
    out = backward_warp(img, flow)
    np.testing.assert_allclose(out[:, : W - 1], img[:, : W - 1] + 1.0, atol=1e-4)


def test_valid_mask_marks_out_of_frame() -> None:
    flow = np.zeros((H, W, 2), np.float32)
    flow[..., 0], flow[..., 1] = 3, -2
    m = valid_mask(flow)
    expected = np.ones((H, W), bool)
    expected[:, W - 3 :] = False
    expected[:2, :] = False
    np.testing.assert_array_equal(m, expected)


def test_occlusion_flags_only_out_of_frame_for_consistent_flow() -> None:
    fw = np.zeros((H, W, 2), np.float32)
    fw[..., 0], fw[..., 1] = 3, -2
    bw = -fw
    occ = forward_backward_occlusion(fw, bw)
    assert occ.dtype == bool and occ.shape == (H, W)
    np.testing.assert_array_equal(occ, ~valid_mask(fw))
    assert occ[:, -1].all() and occ[0, :].all()
    assert not occ[10:50, 10:60].any()


def test_occlusion_flags_inconsistent_flow() -> None:
    fw = np.zeros((H, W, 2), np.float32)
    fw[..., 0] = 3
    bw = np.zeros_like(fw)  # |fw + bw|^2 = 9 > 0.01 * 9 + 0.5
    assert forward_backward_occlusion(fw, bw).all()
    # A small inconsistency stays under the 0.5 px^2 slack.
    bw[..., 0] = -2.5
    occ = forward_backward_occlusion(fw, bw)
    assert not occ[:, : W - 3].any()


def test_occlusion_on_dis_flow_of_translation() -> None:
    src, dst = shifted_pair(dx=3, dy=-2)
    fw = dis_flow(src, dst)
    bw = dis_flow(dst, src)
    occ = forward_backward_occlusion(fw, bw)
    assert occ[:, -1].all()  # x + 3 leaves the frame
    assert occ[0, :].all()  # y - 2 leaves the frame
    assert occ[8:-8, 8:-8].mean() < 0.05
