"""Long runs that survive: segments and resume, signals, ranges, preview, batches, executors, progress."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import audio_packets, list_dir, make_clip_frames, read_frames, to_gray_rgb, write_png, write_video
from test_cli import assert_one_line_error, invoke

import chromaflow
from chromaflow import ColorizeOptions, ReferenceSpec
from chromaflow.errors import OutputError
from chromaflow.pipeline.work import WorkDir, default_work_dir

SHOT = 10


def _shots(k: int = 3) -> list[np.ndarray]:
    """``k`` shots of ``SHOT`` frames each, cut apart (inverted, mirrored, shifted)."""
    base = make_clip_frames(SHOT)
    variants = [base, [np.ascontiguousarray(255 - f[:, ::-1]) for f in base],
                [np.ascontiguousarray(np.roll(f, 40, axis=0)[::-1]) for f in base],
                [np.ascontiguousarray(255 - np.roll(f, 60, axis=1)) for f in base]]
    return [f for v in variants[:k] for f in v]


@pytest.fixture(scope="module")
def shots_clip(tmp_path_factory) -> tuple[Path, Path, list[np.ndarray]]:
    root = tmp_path_factory.mktemp("shots")
    frames = _shots(3)
    video = write_video(root / "three.mp4", [to_gray_rgb(f) for f in frames], audio=True)
    ref = write_png(root / "ref0.png", frames[0])
    return video, ref, frames


def _opts(ref: Path, **kw) -> ColorizeOptions:
    # lossless: resumed and whole runs are compared frame for frame, to the level
    return ColorizeOptions(references=(ReferenceSpec(ref, 0),), progress="none", lossless=True, **kw)


class _StopAfter:
    """A progress callback that interrupts the run after ``n`` shots (as Ctrl-C would)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, event) -> None:
        if event.kind == "shot" and event.shots_done >= self.n:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def whole(shots_clip, tmp_path_factory) -> list[np.ndarray]:
    video, ref, _ = shots_clip
    out = tmp_path_factory.mktemp("whole") / "whole.mp4"
    chromaflow.colorize(video, out, _opts(ref))
    return read_frames(out)


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_plan_has_three_shots(shots_clip, whole) -> None:
    video, ref, frames = shots_clip
    assert len(whole) == len(frames)
    from chromaflow.io.source import open_source
    from chromaflow.pipeline.engine import analyse

    with open_source(video) as src:
        plan = analyse(src, chromaflow.pipeline.build_conditions(_opts(ref), src))
    assert [s.start for s in plan.shots] == [0, SHOT, 2 * SHOT]


def test_interrupted_run_resumes_with_the_same_output(shots_clip, whole, tmp_path: Path, caplog) -> None:
    video, ref, _ = shots_clip
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        chromaflow.colorize(video, out, _opts(ref), on_event=_StopAfter(1))
    work = default_work_dir(out)
    assert not out.exists() and work.is_dir()
    assert list_dir(tmp_path) == [work.name]  # no half-written output beside it
    manifest = json.loads((work / "manifest.json").read_text())
    assert list(manifest["segments"]) == ["0"]
    with caplog.at_level("INFO", logger="chromaflow"):
        chromaflow.colorize(video, out, _opts(ref))
    assert "resuming: 1 of 3 shots done" in caplog.text
    _same(read_frames(out), whole)
    assert not work.exists()  # removed after success
    assert audio_packets(out) == audio_packets(video)


def test_changed_configuration_or_version_starts_afresh(shots_clip, whole, tmp_path: Path, caplog) -> None:
    video, ref, _ = shots_clip
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        chromaflow.colorize(video, out, _opts(ref, seed=5), on_event=_StopAfter(1))
    with caplog.at_level("INFO", logger="chromaflow"), pytest.raises(KeyboardInterrupt):
        chromaflow.colorize(video, out, _opts(ref), on_event=_StopAfter(1))
    assert "starting afresh: the configuration differs" in caplog.text
    manifest_path = default_work_dir(out) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["version"] = 0
    manifest_path.write_text(json.dumps(manifest))
    caplog.clear()
    with caplog.at_level("INFO", logger="chromaflow"):
        chromaflow.colorize(video, out, _opts(ref))
    assert "starting afresh: the work folder was made by chromaflow" in caplog.text
    _same(read_frames(out), whole)


def test_truncated_segment_is_redone(shots_clip, whole, tmp_path: Path, caplog) -> None:
    video, ref, _ = shots_clip
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        chromaflow.colorize(video, out, _opts(ref), on_event=_StopAfter(2))
    seg = default_work_dir(out) / "shot_00001.mkv"
    seg.write_bytes(seg.read_bytes()[: seg.stat().st_size // 2])
    with caplog.at_level("INFO", logger="chromaflow"):
        chromaflow.colorize(video, out, _opts(ref))
    assert "resuming: 1 of 3 shots done" in caplog.text and "truncated or damaged" in caplog.text
    _same(read_frames(out), whole)


def test_a_segment_finished_but_not_yet_recorded_is_kept(shots_clip, whole, tmp_path: Path, caplog) -> None:
    """Killed after a segment took its name but before the manifest listed it: the segment's own
    description vouches for it and the resume keeps it; one whose file no longer matches is redone."""
    video, ref, _ = shots_clip
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        chromaflow.colorize(video, out, _opts(ref), on_event=_StopAfter(2))
    work = default_work_dir(out)
    manifest_path = work / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert sorted(manifest["segments"]) == ["0", "1"]
    del manifest["segments"]["0"], manifest["segments"]["1"]  # as if killed before either was recorded
    manifest_path.write_text(json.dumps(manifest))
    seg = work / "shot_00001.mkv"
    seg.write_bytes(seg.read_bytes()[:-10])  # and the second one damaged since
    with caplog.at_level("INFO", logger="chromaflow"):
        chromaflow.colorize(video, out, _opts(ref))
    assert "shot 1 was finished but not yet recorded" in caplog.text
    assert "shot 2 was finished" not in caplog.text
    assert "resuming: 1 of 3 shots done" in caplog.text
    _same(read_frames(out), whole)


def test_fresh_ignores_finished_shots(shots_clip, whole, tmp_path: Path, caplog) -> None:
    video, ref, _ = shots_clip
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        chromaflow.colorize(video, out, _opts(ref), on_event=_StopAfter(1))
    with caplog.at_level("INFO", logger="chromaflow"):
        chromaflow.colorize(video, out, _opts(ref, fresh=True))
    assert "starting afresh: --fresh" in caplog.text and "resuming" not in caplog.text
    _same(read_frames(out), whole)


def test_work_dir_leaves_the_rest_of_that_folder_alone(shots_clip, whole, tmp_path: Path) -> None:
    video, ref, _ = shots_clip
    scratch = tmp_path / "scratch"
    (scratch / "keep").mkdir(parents=True)
    (scratch / "precious.txt").write_text("mine")
    out = tmp_path / "out.mp4"
    chromaflow.colorize(video, out, _opts(ref, work_dir=scratch))
    _same(read_frames(out), whole)
    assert sorted(p.name for p in scratch.iterdir()) == ["keep", "precious.txt"]  # only its own folder went


def test_an_edited_reference_starts_afresh(shots_clip, tmp_path: Path, caplog) -> None:
    video, _, frames = shots_clip
    ref = write_png(tmp_path / "ref.png", frames[0])
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        chromaflow.colorize(video, out, _opts(ref), on_event=_StopAfter(1))
    write_png(ref, np.ascontiguousarray(frames[0][:, :, ::-1]))  # the same path, other colours
    with caplog.at_level("INFO", logger="chromaflow"):
        chromaflow.colorize(video, out, _opts(ref))
    assert "starting afresh: the configuration differs" in caplog.text and "resuming" not in caplog.text


def test_workers_use_the_palette_the_driver_resolved(shots_clip) -> None:
    from chromaflow.guidance.palette import parse_hex_list
    from chromaflow.io.source import open_source

    video, _, _ = shots_clip
    given = parse_hex_list("#ff0000,#00ff00")
    with open_source(video) as src:
        cond = chromaflow.pipeline.build_conditions(ColorizeOptions(palette="#0000ff"), src, palette=given)
    assert cond.palette.hex() == given.hex()


def test_a_second_run_on_the_same_output_refuses(shots_clip, tmp_path: Path) -> None:
    video, ref, _ = shots_clip
    out = tmp_path / "out.mp4"
    held = WorkDir(default_work_dir(out))
    try:
        r = invoke("colorize", video, "-o", out, "--reference", ref, "--reference-frame", "0")
        assert_one_line_error(r, "another chromaflow run", "this output")
    finally:
        held.release()
    assert not out.exists()


def test_unwritable_work_folder_is_one_line(shots_clip, tmp_path: Path) -> None:
    video, ref, _ = shots_clip
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = invoke("colorize", video, "-o", tmp_path / "o.mp4", "--reference", ref, "--work-dir", blocker / "work")
    assert_one_line_error(r, "work folder")
    assert not (tmp_path / "o.mp4").exists()


def test_a_full_work_folder_is_one_line_and_keeps_finished_shots(shots_clip, tmp_path: Path, monkeypatch) -> None:
    import errno

    import chromaflow.pipeline.work as work_module

    video, ref, _ = shots_clip
    out = tmp_path / "out.mp4"
    real = work_module.av.VideoFrame
    calls = []

    class FillingUp:
        @staticmethod
        def from_ndarray(*a, **k):
            calls.append(1)
            if len(calls) > 2 * SHOT + 3:  # the disk fills during the third shot
                raise OSError(errno.ENOSPC, "No space left on device")
            return real.from_ndarray(*a, **k)

    monkeypatch.setattr(work_module.av, "VideoFrame", FillingUp)
    with pytest.raises(OutputError, match="No space left on device"):
        chromaflow.colorize(video, out, _opts(ref))
    work = default_work_dir(out)
    assert not out.exists() and len(json.loads((work / "manifest.json").read_text())["segments"]) == 2
    assert not list(work.glob(".*.tmp"))  # the half-written segment is gone


def test_ray_address_that_does_not_answer_is_one_line(shots_clip, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    video, ref, _ = shots_clip
    r = invoke("colorize", video, "-o", tmp_path / "o.mp4", "--reference", ref, "--ray", "127.0.0.1:9")
    assert_one_line_error(r, "cannot reach the ray cluster", "127.0.0.1:9")


def test_stale_temporary_output_of_a_killed_run_is_removed(shots_clip, tmp_path: Path) -> None:
    video, ref, _ = shots_clip
    out = tmp_path / "out.mp4"
    stale = tmp_path / ".out.chromaflow-999999999.tmp.mp4"  # no such process
    stale.write_bytes(b"half a video")
    chromaflow.colorize(video, out, _opts(ref))
    assert not stale.exists() and out.exists()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "chromaflow.cli", *[str(a) for a in args]]


def _wait_for(path_glob: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    t0 = time.time()
    while not list(path_glob.parent.glob(path_glob.name)) if path_glob.parent.exists() else True:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before it could be stopped: {proc.stderr.read()}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError("no segment appeared")
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_process_resumes(shots_clip, whole, tmp_path: Path, sig) -> None:
    """``kill -9`` (nothing can run on the way out) and SIGTERM (stopped like Ctrl-C) both leave the
    finished shots; the same command then resumes and gives the uninterrupted output."""
    video, ref, _ = shots_clip
    out = tmp_path / "out.mp4"
    cmd = _cli("colorize", video, "-o", out, "--reference", ref, "--reference-frame", "0", "--lossless")
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    _wait_for(default_work_dir(out) / "shot_00000.mkv", proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert proc.returncode == 130 and "interrupted" in err, err
        assert "kept in" in err and "Traceback" not in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".mp4")] == []  # no temporary output left
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "resuming:" in r.stderr and "shots done" in r.stderr
    _same(read_frames(out), whole)


# ----------------------------------------------------------------- ranges, preview, batches


def test_frame_range_equals_the_full_run_there(shots_clip, whole, tmp_path: Path) -> None:
    video, ref, frames = shots_clip
    out = tmp_path / "range.mp4"
    r = invoke("colorize", video, "-o", out, "--reference", ref, "--reference-frame", "0", "--frames", "5:22",
               "--lossless")
    assert r.exit_code == 0, r.output
    got = read_frames(out)
    _same(got, whole[5:22])
    codec, n_audio = audio_packets(out)
    assert codec == audio_packets(video)[0] and 0 < n_audio < audio_packets(video)[1]  # the audio is cut too
    r = invoke("colorize", video, "-o", tmp_path / "bad.mp4", "--frames", "9:3")
    assert_one_line_error(r, "--frames")
    r = invoke("colorize", video, "-o", tmp_path / "bad.mp4", "--reference", ref, "--frames", "900:")
    assert_one_line_error(r, "frames")


def test_preview_writes_a_contact_sheet_and_the_palette(shots_clip, tmp_path: Path, tiny_model: Path) -> None:
    video, ref, _ = shots_clip
    out = tmp_path / "film.mp4"
    r = invoke("colorize", video, "-o", out, "--preview", "--palette", "#e62828,#1e28aa", "--model", tiny_model,
               "--steps", "2")
    assert r.exit_code == 0, r.output
    assert sorted(list_dir(tmp_path)) == ["film.palette.png", "film.preview.png"]  # not the video itself
    import cv2

    sheet = cv2.imread(str(tmp_path / "film.preview.png"))
    assert sheet is not None and sheet.shape[1] >= 3 * 2 * 240
    r = invoke("colorize", video, "-o", out, "--preview", "--reference", ref, "--reference-frame", "0")
    assert_one_line_error(r, "exists", "--overwrite")
    r = invoke("colorize", video, "-o", out, "--preview", "--reference", ref, "--reference-frame", "0", "--overwrite")
    assert r.exit_code == 0, r.output


def test_batch_reports_each_file_and_goes_on_after_a_failure(shots_clip, tmp_path: Path) -> None:
    video, ref, frames = shots_clip
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_video(inputs / "a.mp4", [to_gray_rgb(f) for f in frames[:6]])
    write_video(inputs / "b.mp4", [to_gray_rgb(f) for f in frames[10:16]])
    (inputs / "c.mp4").write_bytes(b"not a video")
    out = tmp_path / "out"
    r = invoke("colorize", str(inputs / "*.mp4"), "-o", out, "--palette", "#e62828,#1e28aa", "--reference", ref)
    assert r.exit_code == 1, r.output
    lines = [line for line in r.stderr.splitlines() if line.startswith("[")]
    assert len(lines) == 3 and "a.mp4: ok" in lines[0] and "b.mp4: ok" in lines[1] and "c.mp4: failed" in lines[2]
    assert "2 of 3 done, 1 failed" in r.stderr
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".mp4") == ["a.mp4", "b.mp4"]
    assert len(read_frames(out / "a.mp4")) == 6
    import shutil

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(inputs / "a.mp4", other / "a.mp4")
    r = invoke("colorize", inputs / "a.mp4", other / "a.mp4", "-o", tmp_path / "o2", "--reference", ref)
    assert_one_line_error(r, "two inputs would write")


# ----------------------------------------------------------------- long shots in windows


@pytest.fixture(scope="module")
def long_shot(tmp_path_factory) -> tuple[Path, Path, list[np.ndarray]]:
    root = tmp_path_factory.mktemp("long")
    base = make_clip_frames(18)
    frames = base + base[::-1][1:]  # the square goes and comes back: one shot of 35 frames
    video = write_video(root / "long.mp4", [to_gray_rgb(f) for f in frames])
    return video, write_png(root / "ref0.png", frames[0]), frames


def _windowed(ref: Path, size: int, **kw) -> ColorizeOptions:
    from dataclasses import replace

    base = _opts(ref, **kw)
    return replace(base, engine=replace(base.engine, max_shot_frames=size, max_gap=6))


def test_long_shot_windows_join_without_a_seam(long_shot, tmp_path: Path) -> None:
    from chromaflow.io.source import open_source
    from chromaflow.metrics import psnr
    from chromaflow.pipeline.engine import analyse

    video, ref, frames = long_shot
    opts = _windowed(ref, 12)
    with open_source(video) as src:
        plan = analyse(src, chromaflow.pipeline.build_conditions(opts, src), opts.engine)
    assert len(plan.shots) >= 3 and [s.continues for s in plan.shots][:2] == [False, True]
    one, windows, pooled = tmp_path / "one.mp4", tmp_path / "win.mp4", tmp_path / "pool.mp4"
    chromaflow.colorize(video, one, _windowed(ref, 0))
    chromaflow.colorize(video, windows, opts)
    chromaflow.colorize(video, pooled, _windowed(ref, 12, executor="pool", workers=2))
    a, b = read_frames(one), read_frames(windows)
    _same(read_frames(pooled), b)  # windows wait for the one before them, wherever they run
    _same(a, b)  # the windows hand over at an anchor of the whole shot, in the state a whole run has there
    assert np.mean([psnr(x, g) for x, g in zip(b, frames)]) > 25.0
    joins = [s.start for s in plan.shots[1:]]
    from chromaflow.color.lab import rgb_to_lab

    step = [float(np.abs(rgb_to_lab(b[t])[..., 1:] - rgb_to_lab(b[t - 1])[..., 1:]).mean()) for t in range(1, len(b))]
    at_joins = [step[t - 1] for t in joins]
    elsewhere = [v for t, v in enumerate(step, 1) if t not in joins]
    assert max(at_joins) < 2.0 * max(elsewhere) + 0.5, (at_joins, max(elsewhere))  # no jump where windows meet


def test_a_resume_inside_a_long_shot(long_shot, tmp_path: Path, caplog) -> None:
    video, ref, _ = long_shot
    out = tmp_path / "out.mp4"
    reference = tmp_path / "ref.mp4"
    chromaflow.colorize(video, reference, _windowed(ref, 12))
    with pytest.raises(KeyboardInterrupt):
        chromaflow.colorize(video, out, _windowed(ref, 12), on_event=_StopAfter(1))
    assert (default_work_dir(out) / "shot_00000.carry.npz").exists()
    with caplog.at_level("INFO", logger="chromaflow"):
        chromaflow.colorize(video, out, _windowed(ref, 12))
    assert "resuming: 1 of" in caplog.text
    _same(read_frames(out), read_frames(reference))
    ranged = tmp_path / "range.mp4"
    chromaflow.colorize(video, ranged, _windowed(ref, 12, frames=(20, 30)))  # inside the second or third window
    _same(read_frames(ranged), read_frames(reference)[20:30])


# ----------------------------------------------------------------- executors and progress


def test_process_pool_gives_the_same_output(shots_clip, whole, tmp_path: Path) -> None:
    video, ref, _ = shots_clip
    out = tmp_path / "pool.mp4"
    chromaflow.colorize(video, out, _opts(ref, executor="pool", workers=2))
    _same(read_frames(out), whole)


def test_progress_log_lines_when_not_a_terminal(shots_clip, tmp_path: Path) -> None:
    video, ref, _ = shots_clip
    events = []
    chromaflow.colorize(video, tmp_path / "p.mp4", _opts(ref), on_event=events.append)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("shot") == 3 and "mux" in kinds
    assert events[-1].frames_done == events[-1].frames_total == 3 * SHOT and events[-1].shots_done == 3
    r = invoke("colorize", video, "-o", tmp_path / "q.mp4", "--reference", ref, "--progress", "log")
    assert r.exit_code == 0 and "30/30 frames (100%), shots 3/3" in r.stderr


ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'chromaflow[ray]')")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_executor_gives_the_same_output(local_ray, shots_clip, whole, tmp_path: Path) -> None:
    video, ref, _ = shots_clip
    out = tmp_path / "ray.mp4"
    chromaflow.colorize(video, out, _opts(ref, executor="ray"))
    _same(read_frames(out), whole)


def test_ray_retries_a_shot_whose_worker_was_killed(local_ray, shots_clip, whole, tmp_path: Path) -> None:
    """A worker is killed while it writes a segment; Ray runs the task again and the output is the same."""
    import threading

    video, ref, _ = shots_clip
    out = tmp_path / "ray.mp4"
    work = default_work_dir(out)
    killed = []

    def killer():
        t0 = time.time()
        while not killed and time.time() - t0 < 120:
            for p in work.glob(".shot_*.mkv.*.tmp") if work.exists() else []:
                pid = int(p.name.split(".")[-2])  # the writer's pid is in the temporary name
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    chromaflow.colorize(video, out, _opts(ref, executor="ray"))
    thread.join()
    assert killed, "no worker was caught writing a segment"
    _same(read_frames(out), whole)
