"""Tests for the command line: colorize (happy path and every bad input), eval and bench."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import N_FRAMES, list_dir, make_clip_frames, read_frames, write_frame_dir, write_png, write_video
from scipy.spatial.distance import jensenshannon
from typer.testing import CliRunner

from chromaflow.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *words: str) -> None:
    """Non-zero exit, exactly one stderr line ``chromaflow: error: ...`` naming the problem, no traceback."""
    assert result.exit_code not in (0, None), result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("chromaflow: error: "), lines[0]
    for w in words:
        assert w.lower() in lines[0].lower(), (w, lines[0])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.fixture()
def out_dir(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


# ----------------------------------------------------------------- colorize


def test_colorize_happy_path(clips, out_dir: Path) -> None:
    out = out_dir / "colored.mp4"
    r = invoke("colorize", clips.gray_audio_video, "-o", out, "--reference", clips.reference, "--reference-frame", "0")
    assert r.exit_code == 0, r.output
    assert list_dir(out_dir) == ["colored.mp4", "colored.mp4.chromaflow.toml"]
    assert len(read_frames(out)) == N_FRAMES
    assert "wrote" in r.stderr and "Traceback" not in r.output


def test_colorize_palette_happy_path(clips, out_dir: Path) -> None:
    r = invoke("colorize", clips.gray_frame_dir, "-o", out_dir / "frames", "--palette", "#e62828, 1e28aa", "-q")
    assert r.exit_code == 0, r.output
    assert r.stderr.strip() == ""  # --quiet: no info lines
    assert len(list_dir(out_dir / "frames")) == N_FRAMES


def _ref_args(clips) -> list:
    return ["--reference", clips.reference, "--reference-frame", "0"]


def test_missing_input(clips, out_dir: Path, tmp_path: Path) -> None:
    r = invoke("colorize", tmp_path / "missing.mp4", "-o", out_dir / "o.mp4", *_ref_args(clips))
    assert_one_line_error(r, "not found", "missing.mp4")
    assert list_dir(out_dir) == []


def test_non_video_input(clips, out_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n" * 50)
    r = invoke("colorize", bad, "-o", out_dir / "o.mp4", *_ref_args(clips))
    assert_one_line_error(r, "notes.mp4", "not a video")
    assert list_dir(out_dir) == []


def test_zero_byte_input(clips, out_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "zero.mp4"
    bad.write_bytes(b"")
    r = invoke("colorize", bad, "-o", out_dir / "o.mp4", *_ref_args(clips))
    assert_one_line_error(r, "zero.mp4", "empty")
    assert list_dir(out_dir) == []


def test_zero_frame_video_input(clips, out_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "noframes.mp4"
    with av.open(str(bad), "w") as out:
        s = out.add_stream("libx264", rate=12)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        out.start_encoding()
    r = invoke("colorize", bad, "-o", out_dir / "o.mp4", *_ref_args(clips))
    assert_one_line_error(r, "noframes.mp4", "no video")
    assert list_dir(out_dir) == []


def test_empty_frame_dir(clips, out_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = invoke("colorize", empty, "-o", out_dir / "o.mp4", *_ref_args(clips))
    assert_one_line_error(r, "no image files", "empty")
    assert list_dir(out_dir) == []


def test_mixed_size_frame_dir(clips, out_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "mixed"
    d.mkdir()
    frames = make_clip_frames(3)
    write_png(d / "f1.png", frames[0])
    write_png(d / "f2.png", frames[1])
    write_png(d / "f3.png", frames[2][:, :90])
    r = invoke("colorize", d, "-o", out_dir / "frames", *_ref_args(clips))
    assert_one_line_error(r, "mixed frame sizes", "f3.png")
    assert list_dir(out_dir) == []


def test_existing_output_needs_overwrite(clips, out_dir: Path) -> None:
    out = out_dir / "o.mp4"
    out.write_bytes(b"old")
    r = invoke("colorize", clips.gray_video, "-o", out, *_ref_args(clips))
    assert_one_line_error(r, "exists", "--overwrite")
    assert list_dir(out_dir) == ["o.mp4"] and out.read_bytes() == b"old"

    r = invoke("colorize", clips.gray_video, "-o", out, *_ref_args(clips), "--overwrite")
    assert r.exit_code == 0, r.output
    assert list_dir(out_dir) == ["o.mp4", "o.mp4.chromaflow.toml"]
    assert len(read_frames(out)) == N_FRAMES


def test_output_folder_missing(clips, out_dir: Path) -> None:
    r = invoke("colorize", clips.gray_video, "-o", out_dir / "nope" / "o.mp4", *_ref_args(clips))
    assert_one_line_error(r, "folder does not exist")
    assert list_dir(out_dir) == []


def test_unknown_output_extension(clips, out_dir: Path) -> None:
    r = invoke("colorize", clips.gray_video, "-o", out_dir / "o.xyz", *_ref_args(clips))
    assert_one_line_error(r, ".xyz")
    assert list_dir(out_dir) == []


def test_output_is_input(clips, tmp_path: Path) -> None:
    r = invoke("colorize", clips.gray_video, "-o", clips.gray_video, *_ref_args(clips), "--overwrite")
    assert_one_line_error(r, "input itself")
    assert len(read_frames(clips.gray_video)) == N_FRAMES


def test_mismatched_reference_counts(clips, out_dir: Path) -> None:
    r = invoke(
        "colorize", clips.gray_video, "-o", out_dir / "o.mp4",
        "--reference", clips.reference, "--reference", clips.reference, "--reference-frame", "0",
    )
    assert_one_line_error(r, "2 --reference but 1 --reference-frame")
    assert list_dir(out_dir) == []


def test_invalid_palette_hex(clips, out_dir: Path) -> None:
    r = invoke("colorize", clips.gray_video, "-o", out_dir / "o.mp4", "--palette", "#ff0000,#12345g")
    assert_one_line_error(r, "invalid hex color", "#12345g")
    assert list_dir(out_dir) == []


def test_too_many_palette_colors(clips, out_dir: Path) -> None:
    r = invoke("colorize", clips.gray_video, "-o", out_dir / "o.mp4", "--palette", "#111,#222,#333,#444,#555,#666")
    assert_one_line_error(r, "6 colors", "at most 5")
    assert list_dir(out_dir) == []


def test_truncated_input_is_an_error_unless_allow_partial(out_dir: Path, tmp_path: Path) -> None:
    from chromaflow.io import ArraySource, open_sink

    rng = np.random.default_rng(0)  # noise: every frame takes its share of the bytes
    frames = [np.repeat(rng.integers(0, 256, (48, 64, 1), dtype=np.uint8), 3, axis=2) for _ in range(30)]
    full = tmp_path / "full.mp4"
    with open_sink(full, ArraySource(frames, fps=12).info) as sink:  # index first: the header announces 30
        for i, f in enumerate(frames):
            sink.write(f, i)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.3)])  # its first 30 %
    r = invoke("colorize", cut, "-o", out_dir / "o.mp4", "--work-size", "64", "-q")
    assert_one_line_error(r, "cut.mp4: only 6 of its 30 frames decode", "truncated", "--allow-partial")
    assert list_dir(out_dir) == []
    r = invoke("colorize", cut, "-o", out_dir / "o.mp4", "--work-size", "64", "-q", "--allow-partial")
    assert r.exit_code == 0, r.output
    assert "warning: " in r.stderr and "only 6 of its 30 frames decode" in r.stderr
    assert len(read_frames(out_dir / "o.mp4")) == 6


def test_frame_directory_output_keeps_the_audio(clips, out_dir: Path) -> None:
    r = invoke("colorize", clips.gray_audio_video, "-o", out_dir / "frames", *_ref_args(clips), "--work-size", "64")
    assert r.exit_code == 0, r.output
    assert f"the audio is in {out_dir / 'frames' / 'audio.m4a'}" in r.stderr
    assert list_dir(out_dir / "frames")[0] == "audio.m4a"
    assert len(list_dir(out_dir / "frames")) == N_FRAMES + 1


def test_ten_bit_gray_kept_in_ffv1_and_warned_in_h264(out_dir: Path, tmp_path: Path) -> None:
    from test_io import _gray10_video

    from chromaflow.io import open_source

    src = tmp_path / "gray10.mkv"
    planes = _gray10_video(src, n=6)
    r = invoke("colorize", src, "-o", out_dir / "o.mkv", "--codec", "ffv1", "--work-size", "64")
    assert r.exit_code == 0, r.output
    assert "-bit samples" not in r.stderr
    with open_source(out_dir / "o.mkv") as res:
        assert res.info.metadata["pix_fmt"] == "yuv444p10le"
        np.testing.assert_array_equal(np.stack(list(res.luma(bits=10))), planes)  # every 10-bit level kept
    r = invoke("colorize", src, "-o", out_dir / "o.mp4", "--work-size", "64")
    assert r.exit_code == 0, r.output
    assert "warning: the input has 10-bit samples; o.mp4 keeps 8 bits" in r.stderr


def test_codec_container_mismatch_is_refused_before_work(clips, out_dir: Path) -> None:
    r = invoke("colorize", clips.gray_video, "-o", out_dir / "o.mp4", "--codec", "prores")
    assert_one_line_error(r, "prores does not go into .mp4 files", ".mov")
    r = invoke("colorize", clips.gray_video, "-o", out_dir / "o.mov", "--codec", "prores", "--lossless")
    assert_one_line_error(r, "ProRes is never lossless")
    assert list_dir(out_dir) == []


def test_reference_frame_outside_video(clips, out_dir: Path) -> None:
    r = invoke("colorize", clips.gray_video, "-o", out_dir / "o.mp4", "--reference", clips.reference,
               "--reference-frame", "99")
    assert_one_line_error(r, "--reference-frame 99", "outside")
    assert list_dir(out_dir) == []


def test_not_available_exit_code(clips, out_dir: Path, monkeypatch, tmp_path: Path) -> None:
    import chromaflow.models.weights as weights

    # an installation without the model files: automatic runs cannot work, and say so
    monkeypatch.setitem(weights.SHIPPED, "diffusion", tmp_path / "missing.safetensors")
    r = invoke("colorize", clips.gray_video, "-o", out_dir / "o.mp4")
    assert_one_line_error(r, "model is not installed")
    assert r.exit_code == 3
    r = invoke("colorize", clips.gray_video, "-o", out_dir / "o.mp4", "--model", tmp_path / "nope.safetensors")
    assert_one_line_error(r, "model weights not found")
    assert r.exit_code == 2
    monkeypatch.undo()
    assert list_dir(out_dir) == []


def test_subprocess_error_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_text("definitely not a video\n" * 10)
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CHROMAFLOW_DEBUG"}
    proc = subprocess.run(
        [sys.executable, "-m", "chromaflow.cli", "colorize", str(bad), "-o", str(out_dir / "x.mp4"),
         "--palette", "#ff0000"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("chromaflow: error:") and "bad.mp4" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert list_dir(out_dir) == []


# ----------------------------------------------------------------- eval


def _perturbed(frames: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """Frames with noise and a colour cast that drifts over time (so CDC > 0)."""
    rng = np.random.default_rng(seed)
    out = []
    for t, f in enumerate(frames):
        cast = np.array([6.0 * t, -3.0 * t, 2.0], np.float64)
        noisy = f.astype(np.float64) + cast + rng.normal(0.0, 4.0, f.shape)
        out.append(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
    return out


def ref_psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    mse = np.mean((pred.astype(np.float64) - gt.astype(np.float64)) ** 2)
    return 10.0 * math.log10(255.0**2 / mse)


def ref_cdc(frames: list[np.ndarray], distances=(1, 2, 4)) -> float:
    hists = [
        [np.bincount(f[..., c].ravel(), minlength=256) / f[..., c].size for c in range(3)] for f in frames
    ]
    per_channel = []
    for c in range(3):
        per_d = []
        for d in distances:
            if d >= len(frames):
                continue
            js = [jensenshannon(hists[t][c], hists[t + d][c]) ** 2 for t in range(len(frames) - d)]
            per_d.append(np.mean(js))
        per_channel.append(np.mean(per_d))
    return float(np.mean(per_channel))


def test_eval_frame_dirs_json(tmp_path: Path) -> None:
    gt_frames = make_clip_frames(7)
    pred_frames = _perturbed(gt_frames, 0)
    gt = write_frame_dir(tmp_path / "gt", gt_frames)
    pred = write_frame_dir(tmp_path / "pred", pred_frames)
    js = tmp_path / "m.json"
    r = invoke("eval", pred, gt, "--json", js)
    assert r.exit_code == 0, r.output
    data = json.loads(js.read_text())
    assert list_dir(tmp_path) == ["gt", "m.json", "pred"]  # no temp file left

    mean = data["mean"]
    for key in ("psnr", "ssim", "colorfulness", "cdc", "warp_error"):
        assert key in mean and math.isfinite(mean[key]), key
    (name,) = data["videos"]
    video = data["videos"][name]
    pf = video["per_frame"]
    for key in ("psnr", "ssim", "colorfulness"):
        assert len(pf[key]) == 7
    assert len(pf["warp_error"]) == 6 and all(v >= 0 for v in pf["warp_error"])
    assert 0 < mean["ssim"] < 1

    psnrs = [ref_psnr(p, g) for p, g in zip(pred_frames, gt_frames)]
    np.testing.assert_allclose(pf["psnr"], psnrs, rtol=1e-4)
    assert mean["psnr"] == pytest.approx(np.mean(psnrs), rel=1e-4)
    assert mean["cdc"] == pytest.approx(ref_cdc(pred_frames), rel=1e-4)
    assert video["video"]["cdc_gt"] == pytest.approx(ref_cdc(gt_frames), rel=1e-4)
    assert mean["cdc"] > video["video"]["cdc_gt"]  # the drifting cast is less consistent
    assert "psnr" in r.stdout.lower()


def test_eval_directory_of_clips(tmp_path: Path) -> None:
    gt_a, gt_b = make_clip_frames(4), [np.ascontiguousarray(f[:, ::-1]) for f in make_clip_frames(5)]
    pred_a, pred_b = _perturbed(gt_a, 1), _perturbed(gt_b, 2)
    for side, (a, b) in {"gt": (gt_a, gt_b), "pred": (pred_a, pred_b)}.items():
        write_frame_dir(tmp_path / side / "clip_a", a)
        write_frame_dir(tmp_path / side / "clip_b", b)
    js = tmp_path / "m.json"
    r = invoke("eval", tmp_path / "pred", tmp_path / "gt", "--json", js)
    assert r.exit_code == 0, r.output
    data = json.loads(js.read_text())
    assert sorted(data["videos"]) == ["clip_a", "clip_b"]
    va = data["videos"]["clip_a"]["video"]["psnr"]
    vb = data["videos"]["clip_b"]["video"]["psnr"]
    assert va == pytest.approx(np.mean([ref_psnr(p, g) for p, g in zip(pred_a, gt_a)]), rel=1e-4)
    assert vb == pytest.approx(np.mean([ref_psnr(p, g) for p, g in zip(pred_b, gt_b)]), rel=1e-4)
    assert data["mean"]["psnr"] == pytest.approx((va + vb) / 2, rel=1e-9)
    assert len(data["videos"]["clip_b"]["per_frame"]["psnr"]) == 5

    # A ground-truth clip without prediction is an error.
    import shutil

    shutil.rmtree(tmp_path / "pred" / "clip_b")
    r = invoke("eval", tmp_path / "pred", tmp_path / "gt", "--json", tmp_path / "m2.json")
    assert_one_line_error(r, "no prediction", "clip_b")
    assert not (tmp_path / "m2.json").exists()


def test_eval_video_files(tmp_path: Path) -> None:
    frames = make_clip_frames(4)
    gt = write_video(tmp_path / "gt.mp4", frames, crf=0)
    pred = write_video(tmp_path / "pred.mp4", _perturbed(frames, 3), crf=0)
    r = invoke("eval", pred, gt, "--json", tmp_path / "m.json")
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "m.json").read_text())
    assert list(data["videos"]) == ["gt"]
    decoded = read_frames(pred), read_frames(gt)
    expect = np.mean([ref_psnr(p, g) for p, g in zip(*decoded)])
    assert data["mean"]["psnr"] == pytest.approx(expect, rel=1e-4)


def test_eval_frame_count_mismatch(tmp_path: Path) -> None:
    frames = make_clip_frames(4)
    write_frame_dir(tmp_path / "gt", frames)
    write_frame_dir(tmp_path / "pred", frames[:3])
    r = invoke("eval", tmp_path / "pred", tmp_path / "gt")
    assert_one_line_error(r, "3 frames", "4")


# ----------------------------------------------------------------- bench


@pytest.fixture(scope="module")
def bench_clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bench") / "clips"
    d.mkdir()
    write_video(d / "syn.mp4", make_clip_frames(8))
    return d


def test_bench(bench_clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench_out"
    r = invoke("bench", bench_clips, "--modes", "exemplar,palette", "--out", out, "--max-frames", "6")
    assert r.exit_code == 0, r.output
    md = (out / "bench.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    for mode in ("gray", "exemplar", "palette"):
        assert any(row.startswith(f"| {mode} (1) |") for row in rows), mode  # summary
        assert any(row.startswith(f"| {mode} |") for row in rows), mode  # per clip
    assert "auto" not in md  # not asked for, not mentioned
    assert "Errors" not in md

    report = json.loads((out / "bench.json").read_text())
    per_clip = report["clips"]["syn"]
    assert sorted(per_clip) == ["exemplar", "gray", "palette"]
    for mode, res in per_clip.items():
        assert res["frames"] == 6
        assert (res["width"], res["height"]) == (96, 64)
        for key in ("psnr", "ssim", "colorfulness", "cdc", "warp_error"):
            assert math.isfinite(res["video"][key]), (mode, key)
        assert len(res["per_frame"]["psnr"]) == 6
        assert res["seconds_per_frame"] > 0
        assert res["peak_memory_mb"] > 0
    assert per_clip["gray"]["video"]["colorfulness"] == 0.0
    # the exemplar (GT frame 0) brings the colour back: far better than gray
    assert per_clip["exemplar"]["video"]["psnr"] > per_clip["gray"]["video"]["psnr"] + 5
    # the model guided by the ground truth's palette: better than gray (measured +2.6 dB)
    assert per_clip["palette"]["video"]["psnr"] > per_clip["gray"]["video"]["psnr"] + 1.5
    assert report["summary"]["exemplar"]["clips"] == 1

    sheet = cv2.imread(str(out / "sheets" / "syn.png"))
    assert sheet is not None
    # 4 sampled frames (rows); gray | exemplar | palette | ground truth (320 px each)
    assert sheet.shape == (4 * round(64 * 320 / 96), 4 * 320, 3)
    assert sheet.std() > 10
    assert list_dir(out) == ["bench.json", "bench.md", "sheets"]


def test_bench_auto_reported_unavailable(bench_clips: Path, monkeypatch, tmp_path: Path) -> None:
    # In-process (a bench run spawns a process per job): without the model files the auto job
    # raises NotAvailableError, which the runner files under "unavailable", and the report lists it.
    import chromaflow.models.weights as weights
    from chromaflow.bench.runner import BenchOptions, render_markdown, run_job
    from chromaflow.errors import NotAvailableError

    monkeypatch.setitem(weights.SHIPPED, "diffusion", tmp_path / "missing.safetensors")
    with pytest.raises(NotAvailableError) as info:
        run_job(bench_clips / "syn.mp4", "auto", BenchOptions(max_frames=2))
    report = {"options": {}, "clips": {}, "unavailable": {"auto": str(info.value)}, "errors": {}, "summary": {}}
    md = render_markdown(report)
    assert "Not available" in md and "`auto`" in md and "not installed" in str(info.value)


def test_bench_bad_inputs(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = invoke("bench", empty, "--out", tmp_path / "o")
    assert_one_line_error(r, "no clips")
    r = invoke("bench", empty, "--modes", "exemplar,sepia", "--out", tmp_path / "o")
    assert_one_line_error(r, "unknown mode", "sepia")


def test_bench_config_is_where_every_mode_starts(tmp_path: Path) -> None:
    from chromaflow.bench.modes import options_for_mode

    cfg = tmp_path / "run.toml"
    cfg.write_text('[grounder]\nname = "auto"\n[grounder.auto]\nrefine = "box"\n[engine]\nmax_gap = 7\n')
    prompt = options_for_mode("prompt", seed=3, config=cfg)
    assert prompt.grounder.options.refine == "box" and prompt.engine.max_gap == 7 and prompt.seed == 3
    assert options_for_mode("prompt").grounder.options.refine == "grabcut"  # without it: the defaults
    warp = options_for_mode("exemplar-warp", config=cfg)
    assert warp.engine.backward is False and warp.grounder.options.refine == "box"  # the ablation's engine
    bad = tmp_path / "bad.toml"
    bad.write_text("[grounder.auto]\nrefine = 3\n")
    empty = tmp_path / "clips"
    empty.mkdir()
    r = invoke("bench", empty, "--config", bad, "--out", tmp_path / "o")
    assert_one_line_error(r, "refine")


class _DieOnUnpickle:
    """Pickles fine; unpickling it (in the job process) ends that process at once."""

    def __reduce__(self):
        return (os._exit, (7,))


def test_bench_job_that_dies_does_not_hang() -> None:
    from chromaflow.bench.runner import BenchOptions, run_isolated

    result: list = []
    t = threading.Thread(target=lambda: result.append(run_isolated(_DieOnUnpickle(), "gray", BenchOptions())),
                         daemon=True)
    t.start()
    t.join(timeout=90)
    assert not t.is_alive(), "run_isolated hangs when the job process dies"
    status, message = result[0]
    assert status == "error" and "7" in message


def _prompts_file(path: Path, boxes: str) -> Path:
    path.write_text('[syn]\nprompt = "a red square, a blue disc"\nboxes = [\n' + boxes + "\n]\n")
    return path


def test_bench_prompt_adherence(bench_clips: Path, tmp_path: Path) -> None:
    from conftest import H, W, square_box

    x0, y0, x1, y1 = square_box(4)
    box = [round((x0 + 3) / W, 3), round((y0 + 3) / H, 3), round((x1 - 3) / W, 3), round((y1 - 3) / H, 3)]
    prompts = _prompts_file(tmp_path / "p.toml", f'{{ frame = 4, object = "square", box = {box} }},')
    out = tmp_path / "bench_out"
    r = invoke("bench", bench_clips, "--modes", "exemplar", "--prompts", prompts, "--out", out, "--max-frames", "6")
    assert r.exit_code == 0, r.output
    report = json.loads((out / "bench.json").read_text())
    adh = report["adherence"]
    assert adh["gray"]["boxes"] == adh["exemplar"]["boxes"] == 1
    # the exemplar carries the red of the square: closer to the truth and to "red" than gray output
    assert adh["exemplar"]["to_gt"] < adh["gray"]["to_gt"] - 10
    assert adh["exemplar"]["to_named"] < adh["gray"]["to_named"]
    assert adh["gray"]["gt_to_named"] == pytest.approx(adh["exemplar"]["gt_to_named"])
    assert "## Prompt adherence" in (out / "bench.md").read_text()


def test_bench_prompt_errors(bench_clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    r = invoke("bench", bench_clips, "--modes", "prompt", "--out", out)
    assert_one_line_error(r, "--prompts")
    bad = _prompts_file(tmp_path / "bad.toml", '{ frame = 4, object = "car", box = [0.1, 0.1, 0.2, 0.2] },')
    r = invoke("bench", bench_clips, "--modes", "prompt", "--prompts", bad, "--out", out)
    assert_one_line_error(r, "'car'")
    bad = _prompts_file(tmp_path / "bad2.toml", '{ frame = 4, object = "square", box = [0.5, 0.1, 0.2, 0.2] },')
    r = invoke("bench", bench_clips, "--modes", "prompt", "--prompts", bad, "--out", out)
    assert_one_line_error(r, "box")
    r = invoke("bench", bench_clips, "--modes", "prompt", "--prompts", tmp_path / "none.toml", "--out", out)
    assert_one_line_error(r, "not found")


def test_skin_prior_without_its_models_is_one_line_and_writes_nothing(clips, out_dir: Path, tmp_path: Path,
                                                                       monkeypatch) -> None:
    monkeypatch.setenv("CHROMAFLOW_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("CHROMAFLOW_OFFLINE", "1")
    monkeypatch.delenv("CHROMAFLOW_MODEL_DIR", raising=False)
    r = invoke("colorize", clips.gray_audio_video, "-o", out_dir / "o.mp4", "--skin-prior", "0.5", "--work-size", "64")
    assert_one_line_error(r, "skin_clothes_hair")
    assert list_dir(out_dir) == []
    r = invoke("colorize", clips.gray_audio_video, "-o", out_dir / "o.mp4", "--skin-prior", "1.5")
    assert r.exit_code != 0 and list_dir(out_dir) == []


def test_skin_prior_runs_with_the_mirror(clips, out_dir: Path, monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    shared = Path(__file__).resolve().parents[2] / "shared" / "models"
    if not (shared / "skin_clothes_hair_pan_mobilenetv3.onnx").is_file():
        pytest.skip("../shared/models is not beside this checkout")
    monkeypatch.setenv("CHROMAFLOW_MODEL_DIR", str(shared))
    out = out_dir / "o.mp4"
    r = invoke("colorize", clips.gray_audio_video, "-o", out, "--skin-prior", "0.5", "--work-size", "64")
    assert r.exit_code == 0, r.output
    assert len(read_frames(out)) == N_FRAMES
    assert "skin_prior = 0.5" in (out_dir / "o.mp4.chromaflow.toml").read_text()
