"""Tests for the FlowEstimator interface, RAFTFlow / RAFT and load_flow_estimator.

RAFT runs with random weights at a tiny size (no real checkpoint is needed or
downloaded); what is checked is plumbing: official parameter names and shapes,
checkpoint loading, padding / cropping / rescaling, determinism.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from chromaflow.models import RAFT, load_raft  # noqa: E402
from chromaflow.temporal import (  # noqa: E402
    DISFlow,
    FlowEstimator,
    RAFTFlow,
    dis_flow,
    load_flow_estimator,
)

H, W = 70, 50  # neither a multiple of 8

# Official names and shapes (princeton-vl/RAFT checkpoints, ``module.`` stripped).
LARGE_KEYS = {
    "fnet.conv1.weight": (64, 3, 7, 7),
    "fnet.conv2.weight": (256, 128, 1, 1),
    "fnet.layer2.0.downsample.0.weight": (96, 64, 1, 1),
    "cnet.conv1.weight": (64, 3, 7, 7),
    "cnet.conv2.weight": (256, 128, 1, 1),
    "cnet.norm1.running_mean": (64,),
    "cnet.layer3.0.norm3.weight": (128,),
    "cnet.layer3.0.downsample.1.running_var": (128,),
    "update_block.encoder.convc1.weight": (256, 324, 1, 1),
    "update_block.encoder.conv.weight": (126, 256, 3, 3),
    "update_block.gru.convz1.weight": (128, 384, 1, 5),
    "update_block.gru.convq2.weight": (128, 384, 5, 1),
    "update_block.flow_head.conv2.weight": (2, 256, 3, 3),
    "update_block.mask.0.weight": (256, 128, 3, 3),
    "update_block.mask.2.weight": (576, 256, 1, 1),
}
SMALL_KEYS = {
    "fnet.conv1.weight": (32, 3, 7, 7),
    "fnet.conv2.weight": (128, 96, 1, 1),
    "fnet.layer1.0.conv1.weight": (8, 32, 1, 1),
    "cnet.conv1.weight": (32, 3, 7, 7),
    "cnet.conv2.weight": (160, 96, 1, 1),
    "cnet.layer3.0.downsample.0.weight": (96, 64, 1, 1),
    "update_block.encoder.convc1.weight": (96, 196, 1, 1),
    "update_block.encoder.conv.weight": (80, 128, 3, 3),
    "update_block.gru.convz.weight": (96, 242, 3, 3),
    "update_block.flow_head.conv2.weight": (2, 128, 3, 3),
}


def frames(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (H, W), dtype=np.uint8)
    return a, np.roll(a, (1, 2), axis=(0, 1))


def save_checkpoint(tmp_path: Path, small: bool) -> Path:
    """Random-weight RAFT saved like the official files (``module.`` prefix)."""
    torch.manual_seed(0)
    model = RAFT(small=small)
    sd = {f"module.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path / ("raft-small.pth" if small else "raft-things.pth")
    torch.save(sd, path)
    return path


@pytest.fixture(scope="module", params=[True, False], ids=["small", "large"])
def checkpoint(request, tmp_path_factory) -> tuple[Path, bool]:
    small = request.param
    return save_checkpoint(tmp_path_factory.mktemp("raft"), small), small


@pytest.mark.parametrize("small,expected", [(False, LARGE_KEYS), (True, SMALL_KEYS)])
def test_official_state_dict_names_and_shapes(small: bool, expected: dict) -> None:
    model = RAFT(small=small)
    sd = model.state_dict()
    for key, shape in expected.items():
        assert key in sd, key
        assert tuple(sd[key].shape) == shape, key
    assert ("update_block.mask.0.weight" in sd) is not small
    assert not any(k.startswith("fnet.norm") for k in sd)  # instance norm: no params
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == (990_162 if small else 5_257_536)


def test_raftflow_shape_determinism_pair(checkpoint) -> None:
    path, small = checkpoint
    est = RAFTFlow(path, iters=2, max_side=64)
    assert isinstance(est, FlowEstimator) and est.name == "raft"
    assert est.small is small and not est.model.training
    a, b = frames()
    f1 = est(a, b)
    assert f1.shape == (H, W, 2) and f1.dtype == np.float32
    assert np.isfinite(f1).all()
    np.testing.assert_array_equal(f1, est(a, b))
    ab, ba = est.pair(a, b)
    for f in (ab, ba):
        assert f.shape == (H, W, 2) and f.dtype == np.float32
    np.testing.assert_allclose(ab, f1, atol=1e-3)  # batched == single (up to float noise)


def test_load_flow_estimator_raft(checkpoint) -> None:
    path, small = checkpoint
    est = load_flow_estimator(str(path), iters=2, max_side=64)
    assert isinstance(est, RAFTFlow) and est.small is small
    a, b = frames(1)
    f = est(a, b)
    assert f.shape == (H, W, 2) and f.dtype == np.float32


def test_raft_without_downscale_pads_and_crops(tmp_path: Path) -> None:
    est = RAFTFlow(save_checkpoint(tmp_path, small=True), iters=1, max_side=None)
    a, b = frames(2)
    f = est(a[:42, :30], b[:42, :30])
    assert f.shape == (42, 30, 2) and f.dtype == np.float32


def test_load_raft_variant_mismatch_and_bad_files(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, small=True)
    assert load_raft(path).small is True
    with pytest.raises(ValueError, match="does not match"):
        load_raft(path, small=False)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError):
        RAFTFlow(junk)


def test_dis_through_interface() -> None:
    a, b = frames(3)
    est = load_flow_estimator("dis")
    assert isinstance(est, DISFlow) and isinstance(est, FlowEstimator)
    assert est.name == "dis" and est.preset == "medium"
    np.testing.assert_array_equal(est(a, b), dis_flow(a, b, preset="medium"))
    ab, ba = est.pair(a, b)
    np.testing.assert_array_equal(ab, est(a, b))
    np.testing.assert_array_equal(ba, est(b, a))
    for preset in ("ultrafast", "fast", "medium"):
        e = load_flow_estimator(f"dis:{preset}")
        assert isinstance(e, DISFlow) and e.preset == preset
        assert e(a, b).shape == (H, W, 2)


def test_load_flow_estimator_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        load_flow_estimator(str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="unknown flow estimator"):
        load_flow_estimator("farneback")
    with pytest.raises(ValueError):
        load_flow_estimator("dis:slow")
    for spec in ("farneback", str(tmp_path / "missing.pth")):
        with pytest.raises(ValueError) as info:
            load_flow_estimator(spec)
        assert "\n" not in str(info.value)
