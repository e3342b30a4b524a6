"""Tests for the colorization pipeline (chromaflow.colorize) and the luminance-LUT baseline."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import (
    FPS,
    N_FRAMES,
    audio_packets,
    disc_center,
    gray_of,
    lab_chroma,
    list_dir,
    read_frames,
    read_pts,
    square_box,
    to_gray_rgb,
    write_frame_dir,
    write_png,
)

import chromaflow
from chromaflow import ColorizeOptions, ReferenceSpec
from chromaflow.color import rgb_to_lab
from chromaflow.colorizers.chroma_model import ModelOptions
from chromaflow.errors import InputError
from chromaflow.pipeline import Choice
from chromaflow.samplers.ddim import SamplerOptions

SHORT = 4  # frames of the short inputs


@pytest.fixture(scope="module")
def short_dirs(clips, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(gray, color) PNG directories of the first SHORT frames, for the slower checks."""
    root = tmp_path_factory.mktemp("short")
    frames = clips.frames[:SHORT]
    return (
        write_frame_dir(root / "gray", [to_gray_rgb(f) for f in frames]),
        write_frame_dir(root / "color", frames),
    )


def _ref0(clips) -> ColorizeOptions:
    return ColorizeOptions(references=(ReferenceSpec(clips.reference, 0),), progress=False)


def _mean_ab(rgb: np.ndarray, ys: slice, xs: slice) -> np.ndarray:
    return rgb_to_lab(rgb)[ys, xs, 1:].reshape(-1, 2).mean(axis=0)


def test_colorize_video_with_reference(clips, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    result = chromaflow.colorize(clips.gray_audio_video, out, _ref0(clips))
    assert result.output == out and result.frames == N_FRAMES
    assert isinstance(result.colorizer, str) and result.colorizer
    assert list_dir(tmp_path) == ["out.mp4", "out.mp4.chromaflow.toml"]

    got = read_frames(out)
    inp = read_frames(clips.gray_audio_video)
    assert len(got) == len(inp) == N_FRAMES
    from chromaflow.io import open_source

    with open_source(out) as o, open_source(clips.gray_audio_video) as i:
        assert o.info.fps == i.info.fps == FPS
        assert o.info.audio_streams == 1
    assert audio_packets(out) == audio_packets(clips.gray_audio_video)

    for k, (g, x) in enumerate(zip(got, inp)):
        # luminance rule: the output's gray is the input's gray, to within what the default H.264 4:2:0 at
        # crf 18 moves it (frame-directory outputs below check it to the level)
        d = np.abs(gray_of(g).astype(int) - gray_of(x).astype(int))
        assert d.mean() < 1.5 and np.percentile(d, 99) <= 6, k
        # colour was added
        assert lab_chroma(g).mean() > lab_chroma(x).mean() + 15.0
        # red square: the output's chroma points at the true red, not at gray
        x0, y0, x1, y1 = square_box(k)
        ys, xs = slice(y0 + 3, y1 - 3), slice(x0 + 3, x1 - 3)
        true_ab = _mean_ab(clips.frames[k], ys, xs)
        out_ab = _mean_ab(g, ys, xs)
        assert np.linalg.norm(out_ab - true_ab) < 0.5 * np.linalg.norm(true_ab)
        assert out_ab[0] > 30  # red: a > 0
        # blue disc: b < 0
        cx, cy = disc_center(k)
        disc_ab = _mean_ab(g, slice(cy - 4, cy + 5), slice(cx - 4, cx + 5))
        assert disc_ab[1] < -30


def test_colorize_is_deterministic(clips, tmp_path: Path) -> None:
    outs = [tmp_path / "run1", tmp_path / "run2"]
    for o in outs:
        chromaflow.colorize(clips.gray_video, o, _ref0(clips))
    names = list_dir(outs[0])
    assert len(names) == N_FRAMES and names == list_dir(outs[1])
    for n in names:
        assert (outs[0] / n).read_bytes() == (outs[1] / n).read_bytes()


def test_color_input_is_converted_to_gray(clips, short_dirs, tmp_path: Path, caplog) -> None:
    out = tmp_path / "out"
    color_dir = short_dirs[1]
    with caplog.at_level(logging.WARNING, logger="chromaflow"):
        chromaflow.colorize(color_dir, out, _ref0(clips))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "in color" in r.getMessage()]
    assert len(warnings) == 1
    got = read_frames(out)
    inp = read_frames(color_dir)
    assert len(got) == SHORT
    for g, x in zip(got, inp):
        d = np.abs(gray_of(g).astype(int) - gray_of(x).astype(int))
        assert (d <= 1).mean() >= 0.99


def test_frame_dir_output_keeps_stems(clips, tmp_path: Path, caplog) -> None:
    out = tmp_path / "colored"
    with caplog.at_level(logging.WARNING, logger="chromaflow"):
        chromaflow.colorize(clips.gray_frame_dir, out, _ref0(clips))
    assert "in color" not in caplog.text  # gray input: no conversion notice
    assert list_dir(out) == sorted(f"frame_{i}.png" for i in range(1, N_FRAMES + 1))
    for i in (1, 2, 10, 12):
        got = read_frames(out / f"frame_{i}.png")[0]
        src = read_frames(clips.gray_frame_dir / f"frame_{i}.png")[0]
        d = np.abs(gray_of(got).astype(int) - gray_of(src).astype(int))
        assert d.max() <= 1
        # frame_i of the output is the colorized frame_i (the square is where it was)
        x0, y0, x1, y1 = square_box(i - 1)
        assert _mean_ab(got, slice(y0 + 3, y1 - 3), slice(x0 + 3, x1 - 3))[0] > 30


def test_frame_dir_to_video_uses_fps(clips, short_dirs, tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    opts = ColorizeOptions(references=(ReferenceSpec(clips.reference, 0),), fps=8, progress=False)
    chromaflow.colorize(short_dirs[0], out, opts)
    from chromaflow.io import open_source

    with open_source(out) as src:
        assert src.info.fps == 8 and src.info.n_frames == SHORT
    assert read_pts(out) == [i * read_pts(out)[1] for i in range(SHORT)]


def test_single_image_to_image(clips, tmp_path: Path) -> None:
    img = write_png(tmp_path / "gray.png", to_gray_rgb(clips.frames[3]))
    out = tmp_path / "col.png"
    chromaflow.colorize(img, out, ColorizeOptions(references=(ReferenceSpec(clips.reference),), progress=False))
    got = read_frames(out)[0]
    assert np.abs(gray_of(got).astype(int) - gray_of(clips.frames[3]).astype(int)).max() <= 1
    assert lab_chroma(got).mean() > 15


def test_palette_hex(clips, tmp_path: Path) -> None:
    out = tmp_path / "pal"
    opts = ColorizeOptions(palette="#e62828,#1e28aa,#aadc78", progress=False)
    chromaflow.colorize(clips.gray_video, out, opts)
    got = read_frames(out)
    inp = read_frames(clips.gray_video)
    for g, x in zip(got, inp):
        assert lab_chroma(g).mean() > lab_chroma(x).mean() + 10.0
        assert np.abs(gray_of(g).astype(int) - gray_of(x).astype(int)).max() <= 1


def test_palette_image(clips, short_dirs, tmp_path: Path) -> None:
    out = tmp_path / "pal"
    chromaflow.colorize(short_dirs[0], out, ColorizeOptions(palette=str(clips.reference), progress=False))
    assert lab_chroma(read_frames(out)[0]).mean() > 10.0


def _assert_fails(clips, tmp_path: Path, exc: type, match: str, **kw) -> None:
    out_dir = tmp_path / "o"
    out_dir.mkdir(parents=True)
    with pytest.raises(exc, match=match):
        chromaflow.colorize(kw.pop("input", clips.gray_video), out_dir / "out.mp4", ColorizeOptions(**kw))
    assert list_dir(out_dir) == []


def test_missing_model_weights(clips, tmp_path: Path) -> None:
    _assert_fails(clips, tmp_path, InputError, "model weights not found",
                  colorizer=Choice("model", ModelOptions(weights=str(tmp_path / "none.safetensors"))))


def test_automatic_and_prompt_runs_use_the_model(clips, tmp_path: Path, tiny_model: Path) -> None:
    model = ModelOptions(weights=str(tiny_model), sampler=SamplerOptions(steps=2))
    outs = {}
    # a prompt naming no object steers the whole frame through its text embedding
    for name, kw in {"auto": {}, "prompt": {"prompt": "vivid red and blue tones"}}.items():
        out = tmp_path / name
        result = chromaflow.colorize(clips.gray_frame_dir, out, ColorizeOptions(colorizer=Choice("model", model), progress=False, **kw))
        assert result.colorizer == "model" and result.frames == N_FRAMES
        outs[name] = read_frames(out)
        for g, x in zip(outs[name], read_frames(clips.gray_frame_dir)):
            assert np.abs(gray_of(g).astype(int) - gray_of(x).astype(int)).max() <= 1
    # the prompt changes the colours
    assert any(not np.array_equal(a, b) for a, b in zip(outs["auto"], outs["prompt"]))
    with pytest.raises(InputError, match="unknown fill"):
        chromaflow.colorize(clips.gray_frame_dir, tmp_path / "x", ColorizeOptions(colorizer=Choice("model", model), fill="magic"))


def test_prompt_masks_are_saved_and_prompt_problems_reported(clips, tmp_path: Path, tiny_model: Path, caplog) -> None:
    model = ModelOptions(weights=str(tiny_model), sampler=SamplerOptions(steps=2))
    masks = tmp_path / "masks"
    opts = ColorizeOptions(colorizer=Choice("model", model), progress=False, prompt="a light blue sky, a foo-colored wall", save_masks=masks)
    with caplog.at_level(logging.WARNING, logger="chromaflow"):
        chromaflow.colorize(clips.gray_frame_dir, tmp_path / "out", opts)
    assert "unknown colour words in the prompt, ignored: foo-colored" in caplog.text
    rows = (masks / "grounding.tsv").read_text().splitlines()[1:]
    frames = sorted({int(r.split("\t")[0]) for r in rows})
    assert frames and frames[0] == 0 and all(r.split("\t")[1] == "sky" for r in rows)
    for f in frames:
        assert (masks / f"frame_{f:06d}_hints.png").exists() and any(masks.glob(f"frame_{f:06d}_mask_1_sky*.png"))
    # without a prompt there is nothing to save: a warning, no folder
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="chromaflow"):
        chromaflow.colorize(clips.gray_frame_dir, tmp_path / "out2",
                            ColorizeOptions(colorizer=Choice("model", model), progress=False, save_masks=tmp_path / "none"))
    assert "--save-masks" in caplog.text and not (tmp_path / "none").exists()


def test_gray_reference_rejected(clips, tmp_path: Path) -> None:
    gray_ref = write_png(tmp_path / "gray_ref.png", to_gray_rgb(clips.frames[0]))
    _assert_fails(clips, tmp_path, InputError, "grayscale", references=(ReferenceSpec(gray_ref, 0),))


def test_missing_reference_rejected(clips, tmp_path: Path) -> None:
    _assert_fails(clips, tmp_path, InputError, "not found", references=(ReferenceSpec(tmp_path / "nope.png", 0),))


@pytest.mark.parametrize("frame", [N_FRAMES, -1, 100])
def test_reference_frame_outside_video(clips, tmp_path: Path, frame: int) -> None:
    _assert_fails(clips, tmp_path, InputError, "outside the video", references=(ReferenceSpec(clips.reference, frame),))


def test_reference_of_other_size_is_resized(clips, short_dirs, tmp_path: Path, caplog) -> None:
    big = cv2.resize(clips.frames[0], (192, 128), interpolation=cv2.INTER_NEAREST)
    ref = write_png(tmp_path / "big_ref.png", big)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="chromaflow"):
        chromaflow.colorize(short_dirs[0], out, ColorizeOptions(references=(ReferenceSpec(ref, 0),)))
    assert "resizing" in caplog.text and "192x128" in caplog.text
    got = read_frames(out)
    assert len(got) == SHORT
    x0, y0, x1, y1 = square_box(0)
    assert _mean_ab(got[0], slice(y0 + 3, y1 - 3), slice(x0 + 3, x1 - 3))[0] > 30


# ----------------------------------------------------------------- the LUT baseline




def test_prompt_with_references_is_reported_unused(clips, short_dirs, tmp_path: Path, caplog) -> None:
    opts = ColorizeOptions(references=(ReferenceSpec(clips.reference, 0),), prompt="a red car", progress=False)
    with caplog.at_level(logging.WARNING, logger="chromaflow"):
        chromaflow.colorize(short_dirs[0], tmp_path / "o", opts)
    assert "--prompt is not used together with --reference" in caplog.text


def test_per_shot_palette_needs_tags(clips, tmp_path: Path) -> None:
    _assert_fails(clips, tmp_path / "a", InputError, "--palette tags", palette="#ff0000", palette_per_shot=True)
    _assert_fails(clips, tmp_path / "b", InputError, "--palette tags", palette_per_shot=True)


def test_tags_palette_runs_whole_video_and_per_shot(clips, tmp_path: Path, tiny_model: Path, caplog) -> None:
    model = ModelOptions(weights=str(tiny_model), sampler=SamplerOptions(steps=2))
    with caplog.at_level(logging.INFO, logger="chromaflow"):
        chromaflow.colorize(clips.gray_frame_dir, tmp_path / "one", ColorizeOptions(colorizer=Choice("model", model), palette="tags", progress=False))
        assert "content tags:" in caplog.text and "palette #" in caplog.text
        caplog.clear()
        chromaflow.colorize(clips.gray_frame_dir, tmp_path / "per_shot",
                            ColorizeOptions(colorizer=Choice("model", model), palette="tags", palette_per_shot=True, progress=False))
    assert f"shot 1 (frames 0-{N_FRAMES - 1}): palette #" in caplog.text
    assert len(read_frames(tmp_path / "per_shot")) == N_FRAMES
