"""Stronger colorizers from the publishers' checkpoints: DDColor, SIGGRAPH17, ECCV16 and the SIGGRAPH17 fill.

No test downloads anything: every checkpoint here is made in the test with
random values in the official layout.  For DDColor the layout (every
parameter name and shape of DDColor-tiny and DDColor-L) and the output of
DDColor-tiny for weights drawn by :func:`reference_state_dict` were recorded
from spandrel-extra-arches' independent port of the official code
(``scripts/ddcolor_reference.py`` -> ``tests/data/ddcolor_reference.json``).
For Zhang et al.'s networks the layout is written out below from the
official ``colorizers/eccv16.py`` and ``colorizers/siggraph17.py``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import N_FRAMES, gray_of, list_dir, read_frames
from test_cli import assert_one_line_error, invoke

from chromaflow.color.lab import gray_to_lightness
from chromaflow.colorizers.ddcolor import DDColorColorizer, DDColorOptions, load_ddcolor
from chromaflow.colorizers.zhang import ZhangOptions, load_zhang
from chromaflow.errors import InputError
from chromaflow.fill.siggraph17 import SIGGRAPH17Fill, SIGGRAPH17FillOptions
from chromaflow.guidance.conditions import Conditions
from chromaflow.models.ddcolor import DDColorConfig, DDColorNet, ddcolor_config
from chromaflow.models.zhang import ECCV16Net, SIGGRAPH17Net
from chromaflow.pipeline import Choice, ColorizeOptions
from chromaflow.pipeline.colorize import colorize
from chromaflow.runtime import Runtime, RuntimeOptions
from chromaflow.store import ModelStore
from chromaflow.store.store import ModelEntry

REFERENCE = json.loads((Path(__file__).parent / "data" / "ddcolor_reference.json").read_text())


def reference_state_dict(shapes: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic weights for a key -> shape map (the recipe of scripts/ddcolor_reference.py)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros(shape, dtype=torch.long)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        else:
            out[key] = torch.randn(shape, generator=g) * 0.05
    return out


# ------------------------------------------------------------------------------ DDColor


@pytest.mark.parametrize("variant,encoder", [("tiny", "convnext-t"), ("large", "convnext-l")])
def test_ddcolor_has_the_official_layout(variant: str, encoder: str) -> None:
    expected = REFERENCE[variant]
    net = DDColorNet(DDColorConfig(encoder=encoder))
    own = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert set(own) == set(expected)
    assert all(own[k] == expected[k] for k in own)
    assert ddcolor_config({k: torch.empty(v) for k, v in expected.items()}) == DDColorConfig(encoder=encoder)


def test_ddcolor_computes_the_reference_function(tmp_path: Path) -> None:
    sd = reference_state_dict(REFERENCE["tiny"])
    path = tmp_path / "ddcolor_paper_tiny.pth"
    torch.save({"params": sd}, path)  # the official files hold the state dict under "params"
    net = load_ddcolor(path)
    gray = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(1)).repeat(1, 3, 1, 1)
    with torch.no_grad():
        out = net(gray)
    ref = REFERENCE["tiny_output"]
    assert list(out.shape) == ref["shape"]
    scale = ref["std"]
    assert abs(float(out.mean()) - ref["mean"]) < 1e-3 * scale
    assert abs(float(out.std()) - ref["std"]) < 1e-3 * scale
    sample = out.flatten()[::997][: len(ref["sample"])].numpy()
    np.testing.assert_allclose(sample, ref["sample"], atol=1e-3 * scale)


@pytest.fixture(scope="module")
def small_ddcolor(tmp_path_factory) -> Path:
    """A DDColor file with ConvNeXt-T but fewer queries and layers (same key names), random weights."""
    torch.manual_seed(0)
    net = DDColorNet(DDColorConfig(encoder="convnext-t", num_queries=8, dec_layers=3))
    net.train()  # a few forward passes settle the spectral norms' power iteration (and batch statistics)
    with torch.no_grad():
        for _ in range(8):
            net(torch.rand(2, 1, 64, 64).repeat(1, 3, 1, 1))
    sd = net.state_dict()
    # a recognisable colour: the refine conv's bias pushes a and b positive
    sd["refine_net.0.0.bias"] = torch.tensor([30.0, 20.0])
    sd["encoder.arch.head_cls.weight"] = torch.zeros(4, 768)  # in the official files, ignored
    sd["encoder.arch.head_cls.bias"] = torch.zeros(4)
    path = tmp_path_factory.mktemp("ddcolor") / "small_ddcolor.pth"
    torch.save({"params": sd}, path)
    return path


def _run(clips, tmp_path: Path, name: str, colorizer: Choice, fill: Choice | None = None, seed: int = 0) -> Path:
    out = tmp_path / name
    # lossless: the luminance rule is checked to the level (the default H.264 4:2:0 moves gray a little)
    options = ColorizeOptions(colorizer=colorizer, seed=seed, runtime=RuntimeOptions(device="cpu"), lossless=True)
    if fill is not None:
        options = replace(options, fill=fill)
    colorize(clips.gray_audio_video, out, options)
    return out


def _assert_colored_and_luminance_kept(clips, out: Path) -> None:
    frames = read_frames(out)
    gray = read_frames(clips.gray_audio_video)
    assert len(frames) == N_FRAMES
    for f, g in zip(frames, gray):
        assert np.abs(gray_of(f).astype(int) - gray_of(g).astype(int)).max() <= 1
    chroma = np.stack([np.abs(f.astype(int) - f.mean(-1, keepdims=True)).mean() for f in frames])
    assert float(chroma.mean()) > 2.0  # coloured, not gray


def test_ddcolor_colors_a_clip_end_to_end(clips, small_ddcolor: Path, tmp_path: Path) -> None:
    choice = Choice("ddcolor", DDColorOptions(weights=str(small_ddcolor), input_size=64))
    a = _run(clips, tmp_path, "a.mp4", choice)
    _assert_colored_and_luminance_kept(clips, a)
    b = _run(clips, tmp_path, "b.mp4", choice)
    assert all(np.array_equal(x, y) for x, y in zip(read_frames(a), read_frames(b)))  # deterministic


def test_ddcolor_from_the_command_line(clips, small_ddcolor: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text("[colorizer.ddcolor]\ninput_size = 64\n")
    out = tmp_path / "cli.mp4"
    r = invoke("colorize", clips.gray_audio_video, "-o", out, "--config", cfg, "--colorizer", "ddcolor",
               "--model", small_ddcolor, "--device", "cpu", "--lossless")
    assert r.exit_code == 0, r.output
    _assert_colored_and_luminance_kept(clips, out)
    stored = (out.parent / (out.name + ".chromaflow.toml")).read_text()
    assert "ddcolor" in stored and "input_size = 64" in stored and small_ddcolor.name in stored


def test_colorizer_keeps_known_colours_and_batches_alike(small_ddcolor: Path) -> None:
    runtime = Runtime(RuntimeOptions(device="cpu"))
    one = DDColorColorizer(load_ddcolor(small_ddcolor), runtime, input_size=64, batch=1)
    three = DDColorColorizer(load_ddcolor(small_ddcolor), runtime, input_size=64, batch=3)
    L = gray_to_lightness(np.random.default_rng(0).integers(0, 255, (3, 40, 56), dtype=np.uint8))
    known_ab = np.zeros((3, 40, 56, 2), np.float32)
    known_ab[..., 0] = -50.0
    conf = np.zeros((3, 40, 56), np.float32)
    conf[:, 5:15, 5:20] = 1.0
    a = one.colorize(L, [0, 5, 9], Conditions(), (known_ab, conf))
    b = three.colorize(L, [0, 5, 9], Conditions(), (known_ab, conf))
    np.testing.assert_allclose(a, b, atol=1e-3)
    assert a.shape == (3, 40, 56, 2)
    assert np.all(a[:, 5:15, 5:20, 0] == -50.0)
    assert float(np.abs(a[:, 20:, 30:]).mean()) > 1.0


# ------------------------------------------------------------------------------ Zhang et al.


def _zhang_layout(which: str) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the official ECCV16 / SIGGRAPH17 files, from the official code."""
    keys: dict[str, tuple[int, ...]] = {}

    def conv(name, cin, cout, k=3, bias=True, transpose=False):
        keys[f"{name}.weight"] = (cin, cout, k, k) if transpose else (cout, cin, k, k)
        if bias:
            keys[f"{name}.bias"] = (cout,)

    def bn(name, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{name}.{p}"] = (c,)
        keys[f"{name}.num_batches_tracked"] = ()

    def block(name, chans, first=0):  # Conv, ReLU pairs then BatchNorm, as in the official Sequentials
        i = first
        for cin, cout in zip(chans[:-1], chans[1:]):
            conv(f"{name}.{i}", cin, cout)
            i += 2
        bn(f"{name}.{i}", chans[-1])

    first_in = 1 if which == "eccv16" else 4
    block("model1", [first_in, 64, 64])
    block("model2", [64, 128, 128])
    block("model3", [128, 256, 256, 256])
    block("model4", [256, 512, 512, 512])
    block("model5", [512, 512, 512, 512])
    block("model6", [512, 512, 512, 512])
    block("model7", [512, 512, 512, 512])
    if which == "eccv16":
        conv("model8.0", 512, 256, k=4, transpose=True)
        conv("model8.2", 256, 256)
        conv("model8.4", 256, 256)
        conv("model8.6", 256, 313, k=1)
        conv("model_out", 313, 2, k=1, bias=False)
    else:
        conv("model8up.0", 512, 256, k=4, transpose=True)
        conv("model3short8.0", 256, 256)
        block("model8", [256, 256, 256], first=1)
        conv("model9up.0", 256, 128, k=4, transpose=True)
        conv("model2short9.0", 128, 128)
        block("model9", [128, 128], first=1)
        conv("model10up.0", 128, 128, k=4, transpose=True)
        conv("model1short10.0", 64, 128)
        conv("model10.1", 128, 128)
        conv("model_class.0", 256, 529, k=1)
        conv("model_out.0", 128, 2, k=1)
    return keys


def _official_file(tmp_path: Path, which: str, seed: int = 0) -> Path:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in _zhang_layout(which).items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(0)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        elif k.endswith("running_mean") or k.endswith(".bias"):
            sd[k] = torch.randn(shape, generator=g) * 0.01
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            sd[k] = torch.randn(shape, generator=g) * (1.0 / fan_in) ** 0.5
    path = tmp_path / f"{which}.pth"
    torch.save(sd, path)
    return path


@pytest.mark.parametrize("which,cls", [("eccv16", ECCV16Net), ("siggraph17", SIGGRAPH17Net)])
def test_zhang_networks_load_the_official_layout_strictly(tmp_path: Path, which: str, cls) -> None:
    own = {k: tuple(v.shape) for k, v in cls().state_dict().items()}
    assert own == _zhang_layout(which)
    net = load_zhang(_official_file(tmp_path, which), which)
    L = torch.full((1, 1, 32, 48), 60.0)
    with torch.no_grad():
        out = net(L)
    assert out.shape == (1, 2, 32, 48) and torch.isfinite(out).all()


def test_siggraph17_uses_its_hints(tmp_path: Path) -> None:
    net = load_zhang(_official_file(tmp_path, "siggraph17"), "siggraph17")
    L = torch.full((1, 1, 32, 32), 50.0)
    hint = torch.zeros(1, 2, 32, 32)
    hint[:, 0] = 60.0
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1.0
    with torch.no_grad():
        plain, hinted = net(L), net(L, hint, mask)
    assert float((plain - hinted).abs().max()) > 1e-3


@pytest.mark.parametrize("which", ["siggraph17", "eccv16"])
def test_zhang_colorizers_color_a_clip_end_to_end(clips, tmp_path: Path, which: str) -> None:
    choice = Choice(which, ZhangOptions(weights=str(_official_file(tmp_path, which)), input_size=64))
    out = _run(clips, tmp_path, f"{which}.mp4", choice)
    frames = read_frames(out)
    gray = read_frames(clips.gray_audio_video)
    assert len(frames) == N_FRAMES
    assert all(np.abs(gray_of(f).astype(int) - gray_of(g).astype(int)).max() <= 1 for f, g in zip(frames, gray))
    again = _run(clips, tmp_path, f"{which}_again.mp4", choice)
    assert all(np.array_equal(x, y) for x, y in zip(frames, read_frames(again)))


def test_siggraph17_fill_keeps_the_hints_and_completes_the_rest(tmp_path: Path) -> None:
    net = load_zhang(_official_file(tmp_path, "siggraph17"), "siggraph17")
    fill = SIGGRAPH17Fill(net, Runtime(RuntimeOptions(device="cpu")), threshold=0.5, max_side=64)
    rng = np.random.default_rng(3)
    L = gray_to_lightness(rng.integers(0, 255, (50, 70), dtype=np.uint8))  # larger than max_side: resized inside
    ab = rng.uniform(-40, 40, (50, 70, 2)).astype(np.float32)
    conf = np.zeros((50, 70), np.float32)
    conf[10:30, 10:40] = 0.9
    conf[35:45, 50:60] = 0.3  # below the threshold: not a hint
    out = fill.fill(L, ab, conf)
    assert out.shape == (50, 70, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out[10:30, 10:40], ab[10:30, 10:40])  # the hints, exactly
    assert not np.allclose(out[35:45, 50:60], ab[35:45, 50:60])  # unreliable: predicted
    # the hints reach the network: different hints, different prediction away from them
    other = fill.fill(L, np.where(conf[..., None] > 0.5, -ab, ab), conf)
    assert float(np.abs(other[40:, :8] - out[40:, :8]).max()) > 1e-4


def test_siggraph17_fill_end_to_end(clips, tmp_path: Path) -> None:
    weights = str(_official_file(tmp_path, "siggraph17"))
    out = _run(clips, tmp_path, "fill.mp4", Choice("siggraph17", ZhangOptions(weights=weights, input_size=64)),
               fill=Choice("siggraph17", SIGGRAPH17FillOptions(weights=weights, max_side=64)))
    assert len(read_frames(out)) == N_FRAMES


# ------------------------------------------------------------------------------ bad checkpoints


def test_missing_and_corrupt_checkpoints_are_one_line(clips, tmp_path: Path) -> None:
    for args, words in (
        (["--colorizer", "ddcolor", "--model", tmp_path / "nope.pth"], ["nope.pth", "no such file"]),
        (["--colorizer", "siggraph17", "--model", tmp_path / "nope.pth"], ["nope.pth"]),
    ):
        r = invoke("colorize", clips.gray_audio_video, "-o", tmp_path / "x.mp4", *args, "--device", "cpu")
        assert_one_line_error(r, *words)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x02not a checkpoint at all" * 50)
    r = invoke("colorize", clips.gray_audio_video, "-o", tmp_path / "x.mp4", "--colorizer", "ddcolor",
               "--model", corrupt, "--device", "cpu")
    assert_one_line_error(r, "cannot read DDColor checkpoint", "corrupt.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save(SIGGRAPH17Net().state_dict(), wrong)  # a real checkpoint of another network
    r = invoke("colorize", clips.gray_audio_video, "-o", tmp_path / "x.mp4", "--colorizer", "ddcolor",
               "--model", wrong, "--device", "cpu")
    assert_one_line_error(r, "not a DDColor state dict")
    r = invoke("colorize", clips.gray_audio_video, "-o", tmp_path / "x.mp4", "--colorizer", "eccv16",
               "--model", wrong, "--device", "cpu")
    assert_one_line_error(r, "does not match", "model1.0.weight")
    assert [p for p in list_dir(tmp_path) if p.startswith("x.mp4")] == []


def test_missing_named_weights_offline_say_where_to_put_them(clips, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CHROMAFLOW_OFFLINE", "1")
    monkeypatch.setenv("CHROMAFLOW_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CHROMAFLOW_MODEL_DIR", raising=False)
    r = invoke("colorize", clips.gray_audio_video, "-o", tmp_path / "x.mp4", "--colorizer", "ddcolor", "--device", "cpu")
    assert_one_line_error(r, "ddcolor_modelscope", "huggingface.co", "chromaflow models fetch")
    r = invoke("backends")
    assert "downloads are off" in r.stdout


def test_checksums_by_prefix_and_recorded_at_download(tmp_path: Path) -> None:
    import hashlib

    data = b"weights" * 100
    digest = hashlib.sha256(data).hexdigest()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "p.pth").write_bytes(data)
    (mirror / "q.pth").write_bytes(data)
    manifest = {
        "p": ModelEntry("p", "p.pth", (), "", sha256_prefix=digest[:8]),
        "bad": ModelEntry("bad", "q.pth", (), "", sha256_prefix="00000000"),
    }
    store = ModelStore(manifest, mirrors=[mirror], cache=tmp_path / "cache", offline=True)
    assert store.path("p") == mirror / "p.pth"
    with pytest.raises(InputError, match="bad checksum"):
        store.path("bad")
    # nothing published: the first download's digest is recorded, and later damage is caught
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    online = ModelStore({"n": ModelEntry("n", "n.pth", (src.as_uri(),), "")}, cache=tmp_path / "cache2", offline=False)
    got = online.fetch("n", progress=False)
    assert got.read_bytes() == data and online.verify(["n"])[0].state == "verified"
    got.write_bytes(data[:-1] + b"X")
    assert online.verify(["n"])[0].state == "bad checksum"
