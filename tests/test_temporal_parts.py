"""Shots, keyframes, reliability, propagation and the spill buffer: pure functions on arrays."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from chromaflow.pipeline.buffer import SpillList
from chromaflow.temporal.keyframes import select_keyframes
from chromaflow.temporal.propagation import (
    carry_track,
    carry_values,
    fuse,
    more_reliable,
    recolor_track,
    start_track,
    track_colors,
    warp_directly,
)
from chromaflow.temporal.reliability import fb_consistency, luminance_agreement, warp_reliability
from chromaflow.temporal.shots import detect_cuts, frame_signature, shot_ranges


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    import cv2

    noise = rng.integers(0, 256, (h, w), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


def _pan(base: np.ndarray, n: int, step: int) -> list[np.ndarray]:
    return [np.roll(base, i * step, axis=1) for i in range(n)]


def test_detect_cuts_finds_the_cut_and_ignores_motion():
    a = _pan(_texture(72, 128, 0), 12, 2)
    b = _pan(np.clip(_texture(72, 128, 1).astype(int) // 2 + 100, 0, 255).astype(np.uint8), 9, 3)
    sigs = [frame_signature(g) for g in a + b]
    assert detect_cuts(sigs) == [0, 12]
    assert shot_ranges([0, 12], 21) == [(0, 12), (12, 21)]


def test_static_video_is_one_shot():
    g = _texture(48, 64, 2)
    assert detect_cuts([frame_signature(g) for _ in range(30)]) == [0]


def test_keyframes_first_last_gap_and_forced():
    g = _texture(48, 64, 3)
    sigs = [frame_signature(g) for _ in range(100)]
    kf = select_keyframes(sigs, start=200, max_gap=30, forced=[250, 999])
    assert kf[0] == 200 and kf[-1] == 299 and 250 in kf and 999 not in kf
    assert max(np.diff(kf)) <= 30


def test_keyframes_pick_the_dissimilar_frame():
    base = _texture(48, 64, 4)
    other = 255 - base
    sigs = [frame_signature(base)] * 20 + [frame_signature(other)] * 3 + [frame_signature(base)] * 20
    kf = select_keyframes(sigs, max_gap=None)
    assert kf[0] == 0 and kf[-1] == 42
    assert any(20 <= k <= 22 for k in kf), kf
    assert len(kf) == 3


def test_fb_consistency_high_for_consistent_flow_low_for_inconsistent():
    h, w = 20, 30
    f = np.zeros((h, w, 2), np.float32)
    f[..., 0] = 2.0
    b = -f
    assert fb_consistency(f, b).min() > 0.99
    assert fb_consistency(f, f)[5:15, 5:25].max() < 0.01


def test_luminance_agreement_and_border():
    light = np.full((10, 12), 50.0, np.float32)
    assert luminance_agreement(light, light).min() == pytest.approx(1.0)
    assert luminance_agreement(light, light + 12.0).max() < 0.05
    flow = np.zeros((10, 12, 2), np.float32)
    flow[..., 0] = 5.0  # points right: the 5 rightmost columns leave the frame
    rel = warp_reliability(flow, -flow, light, light)
    assert rel[:, :6].min() > 0.99
    assert rel[:, -4:].max() == 0.0


def test_track_moves_colour_with_the_flow_and_keeps_the_weakest_confidence():
    h, w = 16, 24
    ab = np.zeros((h, w, 2), np.float32)
    ab[:, 8, 0] = 40.0  # a vertical line of colour at x = 8 in the anchor frame
    track = start_track(ab, np.ones((h, w), np.float32))
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0] = -3.0  # target pixel x comes from source x - 3: the line moves to x = 11
    rel = np.full((h, w), 0.4, np.float32)  # soft threshold: 0.2 -> 0, 0.6 -> 1, so 0.4 -> 0.5
    track = carry_track(track, flow, rel)
    out = track_colors(track, ab)
    assert out[:, 11, 0] == pytest.approx(np.full(h, 40.0))
    assert np.abs(out[:, 8, 0]).max() == 0.0
    assert track.confidence.max() == pytest.approx(0.5)
    reliable = np.full((h, w), 0.9, np.float32)
    assert carry_track(track, np.zeros_like(flow), reliable).confidence.max() == pytest.approx(0.5)


def test_track_samples_the_anchor_once_instead_of_blurring():
    """Half-pixel shifts there and back blur warped colours; a chained track does not."""
    h, w = 8, 40
    ab = np.zeros((h, w, 2), np.float32)
    ab[:, 20, 1] = 50.0
    track = start_track(ab, np.ones((h, w), np.float32))
    half = np.zeros((h, w, 2), np.float32)
    ones = np.ones((h, w), np.float32)
    for step in (0.5, -0.5) * 10:
        half[..., 0] = step
        track = carry_track(track, half, ones)
    out = track_colors(track, ab)
    assert out[:, 20, 1] == pytest.approx(np.full(h, 50.0), abs=1.0)  # at most a 1/32-px remap error


def test_carry_values_moves_any_array_and_says_how_far_to_trust_it():
    h, w = 16, 24
    mask = np.zeros((h, w), np.float32)
    mask[4:8, 6:10] = 1.0  # an object's mask at the anchor
    track = start_track(np.zeros((h, w, 2), np.float32), np.ones((h, w), np.float32))
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0] = -3.0  # everything moves 3 px right
    rel = np.ones((h, w), np.float32)
    rel[:, :12] = 0.4  # the left half is half trusted
    track = carry_track(track, flow, rel)
    replaced = np.zeros((h, w), bool)
    replaced[:, 20:] = True
    track = recolor_track(track, np.zeros((h, w, 2), np.float32), replaced, 0.6)
    moved, trust = carry_values(track, mask)
    assert moved.shape == (h, w) and moved[4:8, 9:13].min() == pytest.approx(1.0) and moved[:, :9].max() == 0.0
    assert trust[:, 13:20] == pytest.approx(np.ones((h, 7))) and trust[:, :12] == pytest.approx(np.full((h, 12), 0.5))
    assert trust[:, 20:].max() == 0.0  # re-coloured on the way: nothing comes from the anchor
    two, _ = carry_values(track, np.stack([mask, 2 * mask], axis=-1))
    assert two.shape == (h, w, 2) and two[5, 10, 1] == pytest.approx(2.0)


def test_recolor_track_carries_the_new_colour_directly():
    h, w = 6, 10
    ab = np.full((h, w, 2), 5.0, np.float32)
    track = start_track(ab, np.ones((h, w), np.float32))
    replaced = np.zeros((h, w), bool)
    replaced[:, :3] = True
    track = recolor_track(track, np.full((h, w, 2), -20.0, np.float32), replaced, 0.6)
    out = track_colors(track, ab)
    assert out[:, :3].max() == pytest.approx(-20.0) and out[:, 3:].min() == pytest.approx(5.0)
    assert track.confidence[:, :3].max() == pytest.approx(0.6)


def test_fuse_weighs_by_distance_and_confidence():
    shape = (4, 5)
    a = np.full(shape + (2,), 10.0, np.float32)
    b = np.full(shape + (2,), -10.0, np.float32)
    one = np.ones(shape, np.float32)
    ab, _ = fuse(a, one, 1, b, one, 3)  # nearer the forward keyframe: weights 3/4 and 1/4
    assert ab[0, 0, 0] == pytest.approx(10 * 0.75 - 10 * 0.25)
    ab, _ = fuse(a, one, 2, b, one, 2)
    assert ab[0, 0, 0] == pytest.approx(0.0, abs=1e-5)
    ab, conf = fuse(a, np.zeros(shape, np.float32), 1, b, one, 3)  # unreliable forward candidate gives way
    assert ab[0, 0, 0] == pytest.approx(-10.0, abs=1e-3)


@dataclasses.dataclass
class _Item:
    index: int
    a: np.ndarray
    b: np.ndarray | None = None


def test_spill_list_round_trips_through_disk():
    items = SpillList(budget_bytes=1000)
    arrays = [np.full((10, 10), i, np.float32) for i in range(5)]  # 400 bytes each: 2 fit in memory
    for i, a in enumerate(arrays):
        items.append(_Item(i, a))
    assert len(items) == 5
    for i in range(5):
        got = items[i]
        assert got.index == i and got.b is None
        np.testing.assert_array_equal(got.a, arrays[i])
    items.set(4, "b", np.ones(3))
    items.set(0, "b", np.zeros(2))
    np.testing.assert_array_equal(items[4].b, np.ones(3))  # on disk
    np.testing.assert_array_equal(items[0].b, np.zeros(2))  # in memory
    spill_dir = items._dir
    assert spill_dir is not None and spill_dir.exists()
    items.clear()
    assert not spill_dir.exists()


def test_more_reliable_takes_the_more_confident_candidate_per_pixel():
    a, b = np.full((2, 3, 2), 1.0, np.float32), np.full((2, 3, 2), 9.0, np.float32)
    conf_a = np.array([[0.9, 0.5, 0.1], [0.4, 0.4, 0.0]], np.float32)
    conf_b = np.array([[0.2, 0.5, 0.8], [0.6, 0.3, 0.0]], np.float32)
    ab, conf = more_reliable(a, conf_a, b, conf_b)
    assert ab[..., 0].tolist() == [[1, 1, 9], [9, 1, 1]]  # ties keep the first
    assert np.allclose(conf, np.maximum(conf_a, conf_b))


def test_warp_directly_moves_the_source_colours_and_flags_what_it_cannot_see():
    from chromaflow.temporal.flow import DISFlow

    base = _texture(64, 96, 3)
    source, frame = base, np.roll(base, 6, axis=1)  # the frame: the source panned 6 px right
    ab = np.zeros((64, 96, 2), np.float32)
    ab[..., 0] = np.linspace(-40, 40, 96, dtype=np.float32)[None, :]
    warped, rel = warp_directly(DISFlow(), frame, source, ab)
    inner = (slice(8, -8), slice(16, -8))
    expected = np.roll(ab, 6, axis=1)
    assert np.abs(warped[inner] - expected[inner]).mean() < 1.5
    assert rel[inner].mean() > 0.8
    assert rel[:, :4].mean() < rel[inner].mean() - 0.3  # the strip that came into view
    source_conf = np.where(np.arange(96) < 48, 1.0, 0.25).astype(np.float32)[None, :].repeat(64, 0)
    _, conf = warp_directly(DISFlow(), frame, source, ab, source_conf)
    assert np.allclose(conf[8:-8, 16:48], rel[8:-8, 16:48], atol=1e-3)  # from the sure half
    assert np.allclose(conf[8:-8, 60:-8], 0.25 * rel[8:-8, 60:-8], atol=1e-3)  # from the unsure half
