"""The temporal engine end to end on small synthetic clips (no files, no ../shared)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import make_clip_frames

from chromaflow.color.lab import rgb_to_gray, rgb_to_lab
from chromaflow.colorizers.base import Colorizer
from chromaflow.colorizers.chroma_model import ModelOptions
from chromaflow.guidance.conditions import Conditions, Reference
from chromaflow.guidance.palette import parse_hex_list
from chromaflow.io.source import ArraySource
from chromaflow.metrics import psnr
from chromaflow.pipeline.colorize import build_engine
from chromaflow.pipeline.engine import EngineOptions
from chromaflow.pipeline.options import Choice, ColorizeOptions
from chromaflow.samplers.ddim import SamplerOptions
from chromaflow.temporal.flow import parse_flow_spec


def _gray3(rgb: np.ndarray) -> np.ndarray:
    return np.repeat(rgb_to_gray(rgb)[..., None], 3, axis=2)


def _engine(conditions, options=None, flow="dis", model=None, fill="levin"):
    """The engine the pipeline builds for these settings (the registered backends, production settings)."""
    from chromaflow.fill.model import ModelFillOptions

    run = ColorizeOptions(engine=options or EngineOptions(), fill=fill, flow=Choice(*parse_flow_spec(flow)))
    if model is not None:
        run = ColorizeOptions(engine=run.engine, flow=run.flow, colorizer=Choice("model", model),
                              fill=Choice("model", ModelFillOptions(model=model)) if fill == "model" else fill)
    return build_engine(run, conditions)


def _run(frames_rgb, conditions, options=None, flow="dis", model=None, fill="levin"):
    src = ArraySource([_gray3(f) for f in frames_rgb])
    engine = _engine(conditions, options, flow, model, fill)
    out = list(engine.run(src, conditions))
    return engine, out


@pytest.fixture(scope="module")
def clip():
    return make_clip_frames(12)


def _mean_psnr(out, gt):
    return float(np.mean([psnr(rgb, g) for (_, rgb), g in zip(out, gt)]))


def test_exemplar_keeps_order_gray_and_beats_gray(clip):
    cond = Conditions(references=(Reference(clip[0], frame=0),))
    _, out = _run(clip, cond)
    assert [f.index for f, _ in out] == list(range(len(clip)))
    for (_f, rgb), g in zip(out, clip):
        d = np.abs(rgb_to_gray(rgb).astype(int) - rgb_to_gray(g).astype(int))
        assert d.max() <= 1
    gray_psnr = float(np.mean([psnr(_gray3(g), g) for g in clip]))
    assert _mean_psnr(out, clip) > gray_psnr + 5.0


def test_correction_beats_plain_warping_on_disocclusions(clip):
    """The moving square uncovers background: plain warping drags red over it."""
    cond = Conditions(references=(Reference(clip[0], frame=0),))
    _, warped = _run(clip, cond, EngineOptions(backward=False, correct=False))
    # The clip is tiny: its disocclusions are under the default 2% trigger, so correct every frame.
    _, corrected = _run(clip, cond, EngineOptions(backward=False, min_correction_fraction=0.0))
    assert _mean_psnr(corrected, clip) > _mean_psnr(warped, clip) + 0.3


def test_reference_at_the_end_propagates_backward(clip):
    cond = Conditions(references=(Reference(clip[-1], frame=len(clip) - 1),))
    _, out = _run(clip, cond)
    first = out[0][1]
    lab_out = rgb_to_lab(first)[..., 1:]
    lab_gt = rgb_to_lab(clip[0])[..., 1:]
    assert np.abs(lab_out - lab_gt).mean() < 8.0


def test_two_references_fuse(clip):
    cond = Conditions(references=(Reference(clip[0], frame=0), Reference(clip[-1], frame=len(clip) - 1)))
    _, out = _run(clip, cond)
    gray_psnr = float(np.mean([psnr(_gray3(g), g) for g in clip]))
    assert _mean_psnr(out, clip) > gray_psnr + 5.0


def test_cut_starts_a_new_shot_and_colors_do_not_leak(clip):
    """Second shot: the same scene mirrored and inverted in brightness; it is coloured
    from the reference by correspondence, never by warping across the cut."""
    second = [np.ascontiguousarray(255 - f[:, ::-1]) for f in clip[:6]]
    frames = clip[:8] + second
    cond = Conditions(references=(Reference(clip[0], frame=0),))
    engine, out = _run(frames, cond)
    assert len(out) == len(frames)
    plan = engine.analyse(ArraySource([_gray3(f) for f in frames]), cond)
    assert [s.start for s in plan.shots] == [0, 8]


def test_single_frame_video_and_static_video(clip):
    cond = Conditions(references=(Reference(clip[0], frame=0),))
    _, out = _run(clip[:1], cond)
    assert len(out) == 1 and psnr(out[0][1], clip[0]) > 30
    static = [clip[0]] * 6
    _, out = _run(static, cond)
    assert all(psnr(rgb, clip[0]) > 30 for _, rgb in out)


def test_palette_mode_colors_every_frame_consistently(clip, tiny_model):
    cond = Conditions(palette=parse_hex_list("#e62828,#1e28aa,#c8d250"))
    _, out = _run(clip, cond, model=ModelOptions(weights=str(tiny_model), sampler=SamplerOptions(steps=3)),
                  fill="model")
    chroma = [np.hypot(*np.moveaxis(rgb_to_lab(rgb)[..., 1:], -1, 0)).mean() for _, rgb in out]
    assert min(chroma) > 1.0  # every frame coloured (a random tiny model: adherence is tested with the real one)
    assert max(chroma) - min(chroma) < 0.25 * max(chroma)  # no flicker of the overall saturation


def test_deterministic(clip):
    cond = Conditions(references=(Reference(clip[0], frame=0),))
    _, a = _run(clip, cond)
    _, b = _run(clip, cond)
    for (_, x), (_, y) in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_memory_budget_spills_to_disk_with_the_same_result(clip):
    cond = Conditions(references=(Reference(clip[-1], frame=len(clip) - 1),))  # everything waits for the anchor
    _, in_memory = _run(clip, cond)
    _, spilled = _run(clip, cond, EngineOptions(memory_budget_mb=0))
    for (_, x), (_, y) in zip(in_memory, spilled):
        np.testing.assert_array_equal(x, y)


def test_user_keyframes_and_outside_keyframes(clip, caplog, tiny_model):
    cond = Conditions(palette=parse_hex_list("#e62828,#1e28aa"))
    engine = _engine(cond, EngineOptions(keyframes=(5, 99)), model=ModelOptions(weights=str(tiny_model)))
    with caplog.at_level(logging.WARNING, logger="chromaflow"):
        plan = engine.analyse(ArraySource([_gray3(f) for f in clip]), cond)
    assert 5 in plan.shots[0].keyframes
    assert any("outside the video" in r.getMessage() for r in caplog.records)


def test_unanchored_reference_uses_correspondence(clip):
    cond = Conditions(references=(Reference(clip[3], frame=None),))
    _, out = _run(clip, cond)
    gray_psnr = float(np.mean([psnr(_gray3(g), g) for g in clip]))
    assert _mean_psnr(out, clip) > gray_psnr


def test_keyframe_added_where_propagation_fails(clip, monkeypatch):
    """Halfway the scene changes; with the cut detector and the keyframe selection blinded
    (only the first and last frame are keyframes), propagation fails at the change and the
    engine makes that frame a keyframe."""
    import chromaflow.pipeline.plan as plan_module

    frames = clip[:12] + [np.ascontiguousarray(np.roll(255 - f, 9, axis=1)) for f in clip[:12]]
    cond = Conditions(references=(Reference(clip[0], frame=0),))
    src = ArraySource([_gray3(f) for f in frames])
    monkeypatch.setattr(plan_module, "detect_cuts", lambda sigs: [0])
    monkeypatch.setattr(plan_module, "select_keyframes", lambda sigs, start, **kw: [start, start + len(sigs) - 1])
    engine = _engine(cond, EngineOptions(), fill="levin")
    out = list(engine.run(src, cond))
    assert [f.index for f, _ in out] == list(range(len(frames)))
    assert any(12 <= k <= 14 for k in engine.added_keyframes), engine.added_keyframes
    assert all(k >= 12 for k in engine.added_keyframes)
    _, warp_only = _run(frames, cond, EngineOptions(correct=False, backward=False))
    assert len(warp_only) == len(frames)  # the plain-warping ablation never adds keyframes


def test_colorizer_colours_only_the_first_keyframe_when_deriving(clip, tiny_model):
    cond = Conditions(palette=parse_hex_list("#e62828,#1e28aa"))
    model = ModelOptions(weights=str(tiny_model), sampler=SamplerOptions(steps=2))
    coloured = {}
    for derive in (True, False):
        engine = _engine(cond, EngineOptions(derive_keyframes=derive, max_gap=4), model=model)
        calls = []
        original = engine.colorizer.colorize
        engine.colorizer.colorize = lambda light, idx, c, *a, _o=original, _calls=calls: (_calls.extend(idx), _o(light, idx, c, *a))[1]
        out = list(engine.run(ArraySource([_gray3(f) for f in clip]), cond))
        assert len(out) == len(clip)
        coloured[derive] = sorted(set(calls) - set(engine.added_keyframes))
        keyframes = engine.analyse(ArraySource([_gray3(f) for f in clip]), cond).shots[0].keyframes
    assert coloured[True] == [0]
    assert coloured[False] == list(keyframes) and len(keyframes) > 2


class _Gray(Colorizer):
    """Colours keyframes gray."""

    name = "gray"

    def colorize(self, lightness, frame_indices, conditions, known=None):
        return np.zeros(lightness.shape + (2,), np.float32)


class _RedEverywhere:
    """A grounder that finds the prompt's object everywhere (hints_on) or nowhere."""

    name = "stub"
    hint_strength = 0.9

    def __init__(self, hints_on: bool) -> None:
        self.hints_on = hints_on

    def matches(self, prompt):
        from chromaflow.guidance.grounding import ObjectMatch

        return [ObjectMatch("disc", (1,), (1.0,))]

    def describe(self, matches):
        return ["'disc': everywhere"]

    def ground(self, gray, prompt):
        from chromaflow.guidance.grounding import Grounding

        ab = np.zeros(gray.shape + (2,), np.float32)
        ab[...] = (60.0, 40.0)
        conf = np.full(gray.shape, 0.9 if self.hints_on else 0.0, np.float32)
        return Grounding((), ab, conf)


def _recording_hints():
    from chromaflow.guidance.hints import PromptHints

    class Recording(PromptHints):
        def __init__(self, grounder):
            super().__init__(grounder)
            self.asked = []

        def at(self, lightness, frame_index, carried=None):
            self.asked.append((frame_index, carried))
            return super().at(lightness, frame_index, carried)

    return Recording


def test_derived_keyframes_take_the_prompt_hints(clip):
    """The disc appears halfway; the derived keyframes colour it from the prompt's hints
    (the engine's hint provider, for any colorizer), not only from its gray neighbours."""
    from chromaflow.fill.levin import LevinFill, LevinOptions
    from chromaflow.pipeline.engine import TemporalEngine
    from chromaflow.temporal.flow import load_flow_estimator

    _Recording = _recording_hints()
    frames = [f.copy() for f in make_clip_frames(12)]
    background = make_clip_frames(12)[0][40:60, 60:96].copy()
    for f in frames[:6]:
        f[40:60, 60:96] = background  # no disc yet (the square never goes there)
    cond = Conditions(prompt="a red disc")
    a_in_disc = {}
    for hints_on in (False, True):
        hints = _Recording(_RedEverywhere(hints_on))
        asked = hints.asked
        fill = LevinFill(**vars(LevinOptions()))
        engine = TemporalEngine(fill, load_flow_estimator("dis"), _Gray(), options=EngineOptions(max_gap=4),
                                hints=hints)
        out = list(engine.run(ArraySource([_gray3(f) for f in frames]), cond))
        assert len(out) == len(frames)
        assert asked[0] == (0, None)  # the colorizer's keyframe, then the derived ones
        derived = asked[1:]
        assert derived and all(c is not None and c.anchor < f for f, c in derived)  # they know where they come from
        cx, cy = 78 - 2 * 9, 50
        a_in_disc[hints_on] = float(rgb_to_lab(out[9][1])[cy - 3 : cy + 4, cx - 3 : cx + 4, 1].mean())
    assert a_in_disc[True] > a_in_disc[False] + 10, a_in_disc


def test_palette_per_shot(clip, tiny_model):
    """Each shot gets the palette its own frames give; the colorizer sees it for that shot only."""
    second = [np.ascontiguousarray(255 - f[:, ::-1]) for f in clip[:6]]
    frames = clip[:8] + second
    red, blue = parse_hex_list("#e62828"), parse_hex_list("#1e28aa")
    shots_seen = []

    def palette_of(grays):
        shots_seen.append(len(grays))
        assert all(g.dtype == np.uint8 and g.ndim == 2 for g in grays)
        return red if len(shots_seen) == 1 else blue

    cond = Conditions(palette_per_shot=palette_of)
    model = ModelOptions(weights=str(tiny_model), sampler=SamplerOptions(steps=2))
    engine = _engine(cond, EngineOptions(), model=model)
    palettes = {}
    original = engine.colorizer.colorize

    def spy(light, idx, c, *a):
        for i in idx:
            palettes[i] = c.palette.hex()
        return original(light, idx, c, *a)

    engine.colorizer.colorize = spy
    out = list(engine.run(ArraySource([_gray3(f) for f in frames]), cond))
    assert len(out) == len(frames) and shots_seen == [8, 6]
    assert palettes[0] == red.hex() and palettes[8] == blue.hex()
    assert all(p == (red.hex() if i < 8 else blue.hex()) for i, p in palettes.items())


def _occluded_square_clip(n: int = 20) -> list[np.ndarray]:
    """A still red square that a bright bar sweeps over (frames 5 to 7), then leaves in view."""
    from conftest import RED, W, _background, _patch

    rng = np.random.default_rng(7)
    bg, square = _background(rng), _patch(rng, RED, 20)
    bar = _patch(rng, (235, 235, 235), 64)[:, :14]
    frames = []
    for i in range(n):
        f = bg.copy()
        f[22:42, 38:58] = square
        x = -14 + 9 * i
        lo, hi = max(0, x), min(W, x + 14)
        if hi > lo:
            f[:, lo:hi] = bar[:, lo - x : hi - x]
        frames.append(np.clip(np.rint(f), 0, 255).astype(np.uint8))
    return frames


class _TrueColours(Colorizer):
    """Colours every keyframe with the ground truth's chroma (an oracle keyframe colorizer)."""

    name = "oracle"

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.ab = [rgb_to_lab(f)[..., 1:] for f in frames]

    def colorize(self, lightness, frame_indices, conditions, known=None):
        import cv2

        h, w = lightness.shape[1:]
        return np.stack([cv2.resize(self.ab[i], (w, h), interpolation=cv2.INTER_AREA) for i in frame_indices])


@pytest.mark.parametrize("mode", ["exemplar", "colorizer"])
def test_direct_match_brings_back_colours_hidden_on_the_way(mode):
    """The chain loses the square while the bar hides it; one flow from the anchor coloured
    first (the reference frame, or the colorizer's keyframe) straight to a later keyframe
    finds it again."""
    from chromaflow.fill.levin import LevinFill, LevinOptions
    from chromaflow.pipeline.engine import TemporalEngine
    from chromaflow.temporal.flow import load_flow_estimator

    clip = _occluded_square_clip()
    if mode == "exemplar":
        cond, colorizer = Conditions(references=(Reference(clip[0], frame=0),)), None
    else:
        cond, colorizer = Conditions(), _TrueColours(clip)

    def square_error(direct: bool) -> float:
        options = EngineOptions(max_gap=5, direct_match=direct)
        engine = TemporalEngine(LevinFill(**vars(LevinOptions())), load_flow_estimator("dis"), colorizer,
                                options=options)
        out = list(engine.run(ArraySource([_gray3(f) for f in clip]), cond))
        after = [(rgb, gt) for (_, rgb), gt in zip(out, clip)][10:]  # the bar has gone
        return float(np.mean([np.abs(rgb_to_lab(o)[22:42, 38:58, 1:] - rgb_to_lab(g)[22:42, 38:58, 1:]).mean()
                              for o, g in after]))

    chained, direct = square_error(False), square_error(True)
    assert chained > 12.0  # the square came back in the wrong colour
    assert direct < 7.0


class _LeftHalfSkin:
    """A face-skin finder that sees skin in the left half of every frame."""

    def __init__(self):
        self.calls = 0

    def __call__(self, gray):
        self.calls += 1
        w = np.zeros(gray.shape, np.float32)
        w[:, : gray.shape[1] // 2] = 1.0
        return w


class _Green(Colorizer):
    """Colours keyframes green (a = -40)."""

    name = "green"

    def colorize(self, lightness, frame_indices, conditions, known=None):
        ab = np.zeros(lightness.shape + (2,), np.float32)
        ab[..., 0] = -40.0
        if known is not None:
            ab = np.where(known[1][..., None] >= 1.0, known[0], ab)
        return ab


def test_skin_prior_pulls_only_the_skin_of_colorizer_keyframes(clip):
    from chromaflow.fill.levin import LevinFill, LevinOptions
    from chromaflow.guidance.skin import SKIN_AB, SkinPrior
    from chromaflow.pipeline.anchors import ColorizerAnchors
    from chromaflow.pipeline.correct import Corrector
    from chromaflow.pipeline.engine import TemporalEngine
    from chromaflow.temporal.flow import load_flow_estimator

    finder = _LeftHalfSkin()
    engine = TemporalEngine(LevinFill(**vars(LevinOptions())), load_flow_estimator("dis"), _Green(),
                            options=EngineOptions(max_gap=4), skin=SkinPrior(0.5, finder))
    out = list(engine.run(ArraySource([_gray3(f) for f in clip]), Conditions()))
    assert len(out) == len(clip) and finder.calls >= 1
    a = rgb_to_lab(out[0][1])[..., 1]
    # left half: halfway from -40 to the prior's a; right half: the colorizer's green
    assert abs(float(np.median(a[:, 5:40])) - (-40 + SKIN_AB[0]) / 2) < 4
    assert abs(float(np.median(a[:, -40:-5])) + 40) < 4
    # carried colours the colorizer must keep are kept by the prior too
    anchors = ColorizerAnchors(Corrector(LevinFill(**vars(LevinOptions())), EngineOptions()), EngineOptions(),
                               _Green(), skin=SkinPrior(1.0, _LeftHalfSkin()))
    light = np.full((1, 16, 16), 50.0, np.float32)
    known_ab = np.full((1, 16, 16, 2), 30.0, np.float32)
    keep = np.zeros((1, 16, 16), np.float32)
    keep[:, :8, :] = 1.0
    ab = anchors._colorize(light, [0], Conditions(), (known_ab, keep))
    assert np.allclose(ab[0, :8, :8], 30.0)  # known and skin: kept
    assert np.allclose(ab[0, 8:, :8], SKIN_AB)  # skin, not known: the prior (strength 1)
    assert np.allclose(ab[0, 8:, 8:, 0], -40.0)  # neither: the colorizer's


def test_skin_prior_is_off_by_default_and_checked(clip, tiny_model):
    model = ModelOptions(weights=str(tiny_model))
    engine = _engine(Conditions(), model=model)
    assert engine.skin is None
    from chromaflow.errors import InputError

    with pytest.raises(InputError, match="skin_prior"):
        _engine(Conditions(), EngineOptions(skin_prior=1.5), model=model)
