"""The open design: backends by name, the run configuration, the device option, the plan as data."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from conftest import N_FRAMES, list_dir, make_clip_frames, read_frames, to_gray_rgb
from test_cli import assert_one_line_error, invoke

import chromaflow
from chromaflow import registry
from chromaflow.color.lab import rgb_to_gray, rgb_to_lab
from chromaflow.colorizers.base import Colorizer
from chromaflow.guidance.conditions import Conditions, Reference
from chromaflow.io.source import ArraySource
from chromaflow.pipeline import Choice, ColorizeOptions, Plan, build_engine, config_to_toml, load_config
from chromaflow.pipeline.options import config_from_dict, config_to_dict

# ----------------------------------------------------------------- a colorizer added from outside


@dataclass(frozen=True)
class SolidOptions:
    """Options of the test colorizer.

    Attributes:
        a: the Lab a every pixel gets.
        b: the Lab b every pixel gets.
    """

    a: float = 40.0
    b: float = 20.0


class SolidColorizer(Colorizer):
    """Colours every keyframe with one chroma (a trivial colorizer)."""

    name = "solid"

    def __init__(self, options: SolidOptions) -> None:
        self.options = options
        self.calls: list[list[int]] = []

    def colorize(self, lightness, frame_indices, conditions, known=None):
        self.calls.append(list(frame_indices))
        out = np.empty(lightness.shape + (2,), np.float32)
        out[...] = (self.options.a, self.options.b)
        return out


@pytest.fixture()
def solid_backend():
    registry.register("colorizer", "solid", options=SolidOptions, description="one colour everywhere")(
        lambda options, runtime: SolidColorizer(options))
    yield
    registry.unregister("colorizer", "solid")


def test_a_registered_colorizer_runs_by_name(solid_backend, clips, tmp_path: Path) -> None:
    out = tmp_path / "solid.mp4"
    r = invoke("colorize", clips.gray_audio_video, "-o", out, "--colorizer", "solid", "--device", "cpu")
    assert r.exit_code == 0, r.output
    frames = read_frames(out)
    assert len(frames) == N_FRAMES
    ab = np.stack([rgb_to_lab(f)[..., 1:] for f in frames])
    # the colorizer's chroma, carried through the shot (gamut limits pull some pixels in)
    assert abs(float(np.median(ab[..., 0])) - 40.0) < 6 and abs(float(np.median(ab[..., 1])) - 20.0) < 6
    stored = load_config(out.with_name(out.name + ".chromaflow.toml"))
    assert stored.colorizer == Choice("solid", SolidOptions())
    # its options come from the configuration like any built-in's
    cfg = tmp_path / "run.toml"
    cfg.write_text('[colorizer]\nname = "solid"\n[colorizer.solid]\na = -30.0\nb = 10.0\n')
    out2 = tmp_path / "solid2.mp4"
    r = invoke("colorize", clips.gray_audio_video, "-o", out2, "--config", cfg)
    assert r.exit_code == 0, r.output
    a2 = float(np.median(rgb_to_lab(read_frames(out2)[3])[..., 1]))
    assert abs(a2 + 30.0) < 6
    r = invoke("backends")
    assert r.exit_code == 0 and "solid" in r.stdout


def test_backends_lists_every_kind_and_why_not() -> None:
    r = invoke("backends")
    assert r.exit_code == 0, r.output
    for name in ("model", "levin", "dis", "raft", "cam"):
        assert name in r.stdout
    assert "give the checkpoint" in r.stdout  # RAFT without a checkpoint: why it cannot run
    kinds = {b.kind for b in registry.backends()}
    assert kinds == set(registry.KINDS)


def test_unknown_backend_is_one_line(clips, tmp_path: Path) -> None:
    r = invoke("colorize", clips.gray_audio_video, "-o", tmp_path / "x.mp4", "--fill", "magic")
    assert_one_line_error(r, "unknown fill", "levin")
    assert list_dir(tmp_path) == []


def test_plugin_entry_points_register_backends(monkeypatch) -> None:
    import importlib.metadata as md

    calls = []

    class EP:
        name, value = "demo", "demo_plugin:register"

        def load(self):
            return lambda: calls.append(registry.register("fill", "demo-fill")(lambda o, r: None))

    class Broken(EP):
        name = "broken"

        def load(self):
            raise ImportError("no module named demo_broken")

    monkeypatch.setattr(md, "entry_points", lambda group: [EP(), Broken()] if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(registry, "_LOADED", False)
    try:
        assert "demo-fill" in registry.names("fill") and calls
    finally:
        registry.unregister("fill", "demo-fill")


# ----------------------------------------------------------------- configuration


def test_config_file_gives_the_same_run_as_the_flags(clips, tmp_path: Path) -> None:
    r = invoke("config")
    assert r.exit_code == 0, r.output
    cfg = tmp_path / "run.toml"
    cfg.write_text(r.stdout)
    assert load_config(cfg) == ColorizeOptions().resolved()
    flags = ["--reference", clips.reference, "--reference-frame", "0", "--work-size", "96", "--crf", "0"]
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    assert invoke("colorize", clips.gray_video, "-o", a, *flags).exit_code == 0
    text = r.stdout.replace("work_max_side = 384", "work_max_side = 96").replace(
        "references = []", f'references = [{{ path = "{clips.reference}", frame = 0 }}]').replace(
        "crf = 18", "crf = 0")  # as --crf 0: lossless, so the frames compare exactly
    cfg.write_text(text)
    assert invoke("colorize", clips.gray_video, "-o", b, "--config", cfg).exit_code == 0
    for x, y in zip(read_frames(a), read_frames(b)):
        np.testing.assert_array_equal(x, y)
    # a changed value changes the run
    c = tmp_path / "c.mp4"
    cfg.write_text(text.replace("work_max_side = 96", "work_max_side = 64"))
    assert invoke("colorize", clips.gray_video, "-o", c, "--config", cfg).exit_code == 0
    assert any(not np.array_equal(x, y) for x, y in zip(read_frames(a), read_frames(c)))
    # the stored configuration reproduces the output
    d = tmp_path / "d.mp4"
    assert invoke("colorize", clips.gray_video, "-o", d, "--config", str(a) + ".chromaflow.toml").exit_code == 0
    for x, y in zip(read_frames(a), read_frames(d)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    "text, words",
    [
        ("[engine]\nwork_max_sid = 96\n", ["engine.work_max_sid", "unknown"]),
        ("[engine]\nwork_max_side = \"big\"\n", ["engine.work_max_side", "integer"]),
        ("[fill]\nname = \"magic\"\n", ["fill", "magic"]),
        ("[fill.levin]\nlam = -1.0\n", ["fill.levin", "lam"]),
        ("[runtime]\ndevice = \"tpu\"\n", ["device", "tpu"]),
        ("colour = 3\n", ["unknown key", "colour"]),
        ("[engine\n", ["not valid toml"]),
    ],
)
def test_bad_config_is_one_line(clips, tmp_path: Path, text: str, words: list[str]) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text(text)
    r = invoke("colorize", clips.gray_video, "-o", tmp_path / "x.mp4", "--config", cfg)
    assert_one_line_error(r, *words)
    assert not (tmp_path / "x.mp4").exists()


def test_config_tree_round_trips_and_flags_override(tmp_path: Path) -> None:
    from chromaflow.fill.levin import LevinOptions
    from chromaflow.temporal.flow import DISOptions

    options = ColorizeOptions(seed=7, palette="#ff0000,#00ff00", fill=Choice("levin", LevinOptions(lam=50.0)),
                              flow=Choice("dis", DISOptions(preset="fast"))).resolved()
    assert config_from_dict(json.loads(json.dumps(config_to_dict(options)))) == options
    cfg = tmp_path / "run.toml"
    cfg.write_text(config_to_toml(options))
    assert load_config(cfg) == options
    from chromaflow.cli import _options_from_flags

    got = _options_from_flags(cfg, {"seed": 3, "flow": "dis:ultrafast", "device": "cpu"})
    assert got.seed == 3 and got.flow == Choice("dis", DISOptions(preset="ultrafast"))
    assert got.fill.options.lam == 50.0 and got.palette == "#ff0000,#00ff00" and got.runtime.device == "cpu"


def test_tests_and_production_use_the_same_fill_settings() -> None:
    from chromaflow.fill.levin import LevinFill, LevinOptions

    built = build_engine(ColorizeOptions(), Conditions(references=(Reference(np.zeros((8, 8, 3), np.uint8), 0),)))
    assert isinstance(built.fill, LevinFill)
    assert built.fill.max_pixels == LevinOptions().max_pixels == LevinFill().max_pixels == 4000


# ----------------------------------------------------------------- device


def test_device_cpu_and_a_missing_cuda(clips, tmp_path: Path) -> None:
    import torch

    out = tmp_path / "cpu.mp4"
    threads = torch.get_num_threads()
    try:
        r = invoke("colorize", clips.gray_video, "-o", out, "--reference", clips.reference, "--reference-frame", "0",
                   "--device", "cpu", "--threads", "1")
        assert r.exit_code == 0, r.output
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)  # torch's threads are process-wide: leave them as they were
    if not torch.cuda.is_available():
        r = invoke("colorize", clips.gray_video, "-o", tmp_path / "gpu.mp4", "--device", "cuda")
        assert_one_line_error(r, "cuda", "--device cpu")
        assert not (tmp_path / "gpu.mp4").exists()
    r = invoke("colorize", clips.gray_video, "-o", tmp_path / "x.mp4", "--device", "gpu0")
    assert_one_line_error(r, "unknown device")


def test_model_runs_on_the_runtime_device(tiny_model: Path) -> None:
    from chromaflow.colorizers.chroma_model import ChromaModel, Guidance, ModelOptions
    from chromaflow.runtime import Runtime, RuntimeOptions
    from chromaflow.samplers.ddim import SamplerOptions

    runtime = Runtime(RuntimeOptions(device="cpu"))
    opts = ModelOptions(weights=str(tiny_model), sampler=SamplerOptions(steps=2))
    model = ChromaModel.load(opts, runtime)
    assert next(model.network.parameters()).device.type == "cpu"
    assert model.encoder is runtime.encoder()  # one shared encoder per runtime
    again = ChromaModel.load(replace(opts, sampler=SamplerOptions(steps=3)), runtime)
    assert again.network is model.network  # the weights are read once
    light = np.full((1, 40, 56), 50.0, np.float32)
    a = model.predict(light, Guidance(seed=4))
    b = model.predict(light, Guidance(seed=4))
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------- the plan as data, a shot on its own


def _two_shot_clip():
    clip = make_clip_frames(10)
    second = [np.ascontiguousarray(255 - f[:, ::-1]) for f in clip[:8]]
    return clip + second


@pytest.mark.parametrize("mode", ["exemplar", "auto"])
def test_plan_round_trips_and_shots_run_on_their_own(mode, tiny_model: Path) -> None:
    from chromaflow.colorizers.chroma_model import ModelOptions
    from chromaflow.samplers.ddim import SamplerOptions

    frames = _two_shot_clip()
    gray = [to_gray_rgb(f) for f in frames]
    if mode == "exemplar":
        cond, options = Conditions(references=(Reference(frames[0], frame=0),)), ColorizeOptions()
    else:
        model = ModelOptions(weights=str(tiny_model), sampler=SamplerOptions(steps=2))
        cond, options = Conditions(seed=2), ColorizeOptions(colorizer=Choice("model", model))
    engine = build_engine(options, cond)
    plan = engine.plan(ArraySource(gray), cond)
    assert len(plan.shots) == 2 and plan.n_frames == len(frames)
    again = Plan.from_json(plan.to_json())
    assert again == plan
    whole = list(engine.run(ArraySource(gray), cond, plan=again))
    parts = []
    for i in reversed(range(len(plan.shots))):  # in any order, each in a fresh engine
        fresh = build_engine(options, cond)
        parts = list(fresh.run(ArraySource(gray), cond, plan=again, shots=[i])) + parts
    assert [f.index for f, _ in parts] == list(range(len(frames)))
    for (_, x), (_, y) in zip(whole, parts):
        np.testing.assert_array_equal(x, y)
    for (_, rgb), g in zip(whole, gray):
        assert np.abs(rgb_to_gray(rgb).astype(int) - g[..., 0].astype(int)).max() <= 1


def test_plan_from_another_version_or_broken_is_refused() -> None:
    plan = Plan(4, 8, 8, (chromaflow.pipeline.ShotPlan(0, 4, (0, 3), (0,)),))
    data = plan.to_dict()
    with pytest.raises(ValueError, match="version"):
        Plan.from_dict({**data, "version": 99})
    with pytest.raises(ValueError, match="shots end at frame 4"):
        Plan.from_dict({**data, "n_frames": 6})
    with pytest.raises(ValueError, match="outside"):
        chromaflow.pipeline.ShotPlan(0, 4, (5,))


def test_components_are_built_once_and_reused(clips, tmp_path: Path) -> None:
    from chromaflow.registry import Components
    from chromaflow.runtime import Runtime, RuntimeOptions

    components = Components(Runtime(RuntimeOptions(device="cpu")))
    opts = ColorizeOptions(references=(chromaflow.ReferenceSpec(clips.reference, 0),), progress=False,
                           lossless=True)  # the frames compare exactly
    a = chromaflow.pipeline.colorize(clips.gray_video, tmp_path / "a.mp4", opts, components=components)
    flow = components.build("flow", "dis")
    b = chromaflow.pipeline.colorize(clips.gray_video, tmp_path / "b.mp4", opts, components=components)
    assert components.build("flow", "dis") is flow and a.frames == b.frames == N_FRAMES
    for x, y in zip(read_frames(a.output), read_frames(b.output)):
        np.testing.assert_array_equal(x, y)
