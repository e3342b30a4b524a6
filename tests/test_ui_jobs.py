"""The web app's job logic without a browser: limits, uploads and zips, job folders, the queue, cancelling."""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import lab_chroma, make_clip_frames, read_frames, to_gray_rgb, write_png
from test_cli import invoke

import chromaflow
from chromaflow import ColorizeOptions, ReferenceSpec
from chromaflow.errors import Cancelled, InputError
from chromaflow.pipeline.preview import preview
from chromaflow.progress import ProgressEvent, format_duration
from chromaflow.registry import Components
from chromaflow.runtime import Runtime, RuntimeOptions
from chromaflow.ui import views
from chromaflow.ui.jobs import (
    JobQueue,
    JobRequest,
    Limits,
    accept_upload,
    colorize_work,
    job_options,
    output_name,
    parse_frame_numbers,
    preview_work,
    stage_input,
    unpack_frames,
)


@pytest.fixture()
def uploads(tmp_path: Path) -> Path:
    root = tmp_path / "uploads"
    root.mkdir()
    return root


@pytest.fixture()
def jobs(tmp_path: Path):
    q = JobQueue(Components(Runtime(RuntimeOptions())), Limits(), parent=tmp_path)
    yield q
    q.close()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


# ---- limits and uploads -------------------------------------------------------------------------------------

def test_limits_must_be_positive() -> None:
    with pytest.raises(InputError, match="max-upload-mb"):
        Limits(max_upload_mb=0)
    with pytest.raises(InputError, match="max-seconds"):
        Limits(max_seconds=-1)


def test_accept_upload_only_inside_the_upload_folder(uploads: Path, tmp_path: Path) -> None:
    inside = uploads / "clip.mp4"
    inside.write_bytes(b"x" * 1000)
    assert accept_upload(inside, (uploads,), Limits()) == inside.resolve()
    outside = tmp_path / "secret.txt"
    outside.write_text("no")
    for path in (outside, uploads / ".." / "secret.txt", Path("/etc/passwd")):
        with pytest.raises(InputError, match="not an uploaded file"):
            accept_upload(path, (uploads,), Limits())
    link = uploads / "link.mp4"
    link.symlink_to(outside)
    with pytest.raises(InputError, match="not an uploaded file"):
        accept_upload(link, (uploads,), Limits())
    with pytest.raises(InputError, match="not an uploaded file"):  # a folder
        accept_upload(uploads, (uploads,), Limits())
    with pytest.raises(InputError, match="over the upload limit of 0.0005 MB"):
        accept_upload(inside, (uploads,), Limits(max_upload_mb=0.0005))


def test_zip_is_unpacked_flat_and_never_outside(tmp_path: Path) -> None:
    frames = make_clip_frames(3)
    archive = _zip(tmp_path / "f.zip", {
        "clip/frame_2.png": _png_bytes(frames[1]),
        "../../escape_1.png": _png_bytes(frames[0]),
        "/abs/frame_3.png": _png_bytes(frames[2]),
        "notes.txt": b"skipped",
        "__MACOSX/clip/._frame_2.png": b"junk",
        "clip/.hidden.png": b"junk",
    })
    out = unpack_frames(archive, tmp_path / "job" / "frames", Limits())
    assert sorted(p.name for p in out.iterdir()) == ["escape_1.png", "frame_2.png", "frame_3.png"]
    assert not (tmp_path / "escape_1.png").exists() and not Path("/abs/frame_3.png").exists()
    got = read_frames(out)  # natural order: escape_1, frame_2, frame_3
    assert [int(np.abs(g.astype(int) - f).max()) for g, f in zip(got, frames)] == [0, 0, 0]


@pytest.mark.parametrize("members, match", [
    ({"a/x.png": b"1", "b/x.png": b"2"}, "two images named x.png"),
    ({"readme.txt": b"hi"}, "no image files"),
    ({"big.png": b"\0" * 3000}, "unpacks to more than"),
])
def test_bad_zips(tmp_path: Path, members, match) -> None:
    archive = _zip(tmp_path / "f.zip", members)
    with pytest.raises(InputError, match=match):
        unpack_frames(archive, tmp_path / "out", Limits(max_unpacked_mb=0.002))


def test_stage_input_copies_checks_kind_and_duration(clips, tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    staged = stage_input(clips.gray_audio_video, job, Limits())
    assert staged.parent == job and staged.read_bytes() == clips.gray_audio_video.read_bytes()
    with pytest.raises(InputError, match=r"1 s \(12 frames\) is over the limit of 0.5 s"):
        stage_input(clips.gray_audio_video, tmp_path, Limits(max_seconds=0.5))
    odd = tmp_path / "clip.exe"
    odd.write_bytes(b"MZ")
    with pytest.raises(InputError, match="upload a video, an image, or a zip"):
        stage_input(odd, job, Limits())
    named = tmp_path / "my clip (1).mp4"
    named.write_bytes(clips.gray_video.read_bytes())
    assert stage_input(named, job, Limits()).name == "my_clip_1_.mp4"


def test_output_names(tmp_path: Path) -> None:
    (tmp_path / "a.mkv").write_bytes(b"x")
    (tmp_path / "b.webm").write_bytes(b"x")
    (tmp_path / "c.jpg").write_bytes(b"x")
    (tmp_path / "frames").mkdir()
    assert [output_name(tmp_path / n) for n in ("a.mkv", "b.webm", "c.jpg", "frames")] == [
        "a_color.mkv", "b_color.mp4", "c_color.png", "frames_color.mp4"]


def test_frame_numbers() -> None:
    assert parse_frame_numbers("", 2) == (None, None)
    assert parse_frame_numbers("0, 120", 2) == (0, 120)
    assert parse_frame_numbers("7", 1) == (7,)
    with pytest.raises(InputError, match="2 reference images but 1 frame number"):
        parse_frame_numbers("3", 2)
    with pytest.raises(InputError, match="whole numbers"):
        parse_frame_numbers("a, b", 2)
    with pytest.raises(InputError, match="count from 0"):
        parse_frame_numbers("-1", 1)


def test_job_options_keep_only_the_chosen_mode(tmp_path: Path) -> None:
    base = ColorizeOptions(palette="#ff0000", prompt="a red car", seed=3, executor="pool", frames=(2, 5))
    ref = (tmp_path / "r.png", 4)
    auto = job_options(base, JobRequest(mode="automatic", references=(ref,), palette="#00ff00", prompt="x"),
                       tmp_path)
    assert (auto.references, auto.palette, auto.prompt, auto.save_masks) == ((), None, None, None)
    assert (auto.executor, auto.frames, auto.fresh, auto.work_dir, auto.progress) == (
        "inprocess", None, True, tmp_path, "none")
    refs = job_options(base, JobRequest(mode="references", references=(ref,)), tmp_path)
    assert refs.references == (ReferenceSpec(tmp_path / "r.png", 4),) and refs.palette is None
    pal = job_options(base, JobRequest(mode="palette", palette="#00ff00"), tmp_path)
    assert (pal.palette, pal.prompt, pal.crf) == ("#00ff00", None, base.crf)  # the server's encoding
    prompt = job_options(base, JobRequest(mode="prompt", prompt=" a blue sky ", seed=9, work_size=160), tmp_path)
    assert (prompt.prompt, prompt.save_masks, prompt.seed, prompt.engine.work_max_side) == (
        "a blue sky", tmp_path / "masks", 9, 160)
    for request, match in [(JobRequest(mode="references"), "at least one color image"),
                           (JobRequest(mode="palette", palette=" "), "pick at least one color"),
                           (JobRequest(mode="prompt"), "describe the colors"),
                           (JobRequest(mode="sepia"), "unknown mode")]:
        with pytest.raises(InputError, match=match):
            job_options(base, request, tmp_path)


# ---- the queue ----------------------------------------------------------------------------------------------

def test_queue_runs_one_job_at_a_time_in_order(jobs: JobQueue) -> None:
    gate = threading.Event()
    running, order, overlaps = [], [], []

    def work(name):
        def run(job):
            if running:
                overlaps.append(name)
            running.append(name)
            if name == "a":
                gate.wait(10)
            time.sleep(0.02)
            order.append(name)
            running.remove(name)
            return name
        return run

    a = jobs.submit("colorize", jobs.new_folder("colorize"), work("a"))
    b = jobs.submit("colorize", jobs.new_folder("colorize"), work("b"))
    c = jobs.submit("preview", jobs.new_folder("preview"), work("c"))
    for _ in range(200):
        if a.state == "running":
            break
        time.sleep(0.01)
    assert (a.state, jobs.ahead(a), jobs.ahead(b), jobs.ahead(c)) == ("running", 0, 1, 2)
    assert views.status_text(c, jobs.ahead(c)) == "Preview: waiting, 2 jobs ahead"
    gate.set()
    assert c.finished.wait(10)
    assert order == ["a", "b", "c"] and overlaps == []
    assert [j.state for j in (a, b, c)] == ["done"] * 3 and c.result == "c"
    assert all(j.folder.is_dir() for j in (a, b, c))  # kept for download


def test_failed_cancelled_and_discarded_jobs_leave_no_files(jobs: JobQueue) -> None:
    gate = threading.Event()

    def blocker(job):
        (job.folder / "partial.mp4").write_bytes(b"half")
        gate.wait(10)
        if job.cancel.is_set():
            raise Cancelled("cancelled")

    def bad(job):
        (job.folder / "partial.mp4").write_bytes(b"half")
        raise InputError("clip.mp4: no frame could be decoded")

    def crash(job):
        raise RuntimeError("boom\nsecond line")

    first = jobs.submit("colorize", jobs.new_folder("colorize"), blocker)
    queued = jobs.submit("colorize", jobs.new_folder("colorize"), lambda job: "never")
    failing = jobs.submit("colorize", jobs.new_folder("colorize"), bad)
    crashing = jobs.submit("colorize", jobs.new_folder("colorize"), crash)
    assert jobs.cancel(queued.id)
    assert jobs.cancel(first.id)
    gate.set()
    assert crashing.finished.wait(10)
    assert (first.state, queued.state, queued.result) == ("cancelled", "cancelled", None)
    assert (failing.state, failing.error) == ("failed", "clip.mp4: no frame could be decoded")
    assert (crashing.state, crashing.error) == ("failed", "internal error: RuntimeError: boom")
    assert views.status_text(failing, 0) == "Colorize: **error**: clip.mp4: no frame could be decoded"
    assert views.status_text(first, 0) == "Colorize: cancelled; nothing was written"
    assert not any(j.folder.exists() for j in (first, queued, failing, crashing))
    assert not jobs.cancel(first.id)  # it ended
    done = jobs.submit("preview", jobs.new_folder("preview"), lambda job: "ok")
    assert done.finished.wait(10) and done.folder.is_dir()
    jobs.discard(done.id)
    assert not done.folder.exists() and jobs.get(done.id) is None


def test_old_jobs_are_swept_and_close_removes_everything(tmp_path: Path) -> None:
    q = JobQueue(Components(Runtime(RuntimeOptions())), Limits(keep_minutes=0.001), parent=tmp_path)
    old = q.submit("preview", q.new_folder("preview"), lambda job: "ok")
    assert old.finished.wait(10)
    time.sleep(0.1)  # keep_minutes = 0.06 s
    new = q.submit("preview", q.new_folder("preview"), lambda job: "ok")  # a submit sweeps
    assert not old.folder.exists() and q.get(old.id) is None
    assert new.finished.wait(10) and new.folder.is_dir()
    root = q.root
    q.close()
    assert not root.exists()
    with pytest.raises(InputError, match="stopping"):
        q.submit("preview", tmp_path, lambda job: None)


def test_job_catches_the_pipelines_warnings(jobs: JobQueue) -> None:
    import logging

    def work(job):
        logging.getLogger("chromaflow").warning("decoded %d of the %d frames the input announces", 71, 289)
        return None

    job = jobs.submit("colorize", jobs.new_folder("colorize"), work)
    logging.getLogger("chromaflow").warning("another thread's warning")
    assert job.finished.wait(10)
    assert job.warnings == ["decoded 71 of the 289 frames the input announces"]
    assert "⚠ decoded 71 of the 289 frames" in views.status_text(job, 0)


# ---- cancelling in the pipeline -----------------------------------------------------------------------------

def test_colorize_is_cancelled_at_the_next_frame(clips, tmp_path: Path) -> None:
    cancel = threading.Event()
    events: list[ProgressEvent] = []

    def on_event(event):
        events.append(event)
        if event.kind == "frame" and event.frames_done == 3:
            cancel.set()

    out = tmp_path / "out.mp4"
    opts = ColorizeOptions(references=(ReferenceSpec(clips.reference, 0),), progress="none")
    with pytest.raises(Cancelled, match="cancelled; no output was written"):
        chromaflow.colorize(clips.gray_video, out, opts, on_event=on_event, cancel=cancel)
    assert max(e.frames_done for e in events) == 3 and not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing finished: no work folder left either
    already = threading.Event()
    already.set()
    with pytest.raises(Cancelled):  # during the analysis pass
        chromaflow.colorize(clips.gray_video, out, opts, cancel=already)
    with pytest.raises(Cancelled):
        preview(clips.gray_video, out, opts, cancel=already)
    assert not out.exists() and not (tmp_path / "out.preview.png").exists()


def test_jobs_colorize_and_preview_with_one_set_of_components(clips, jobs: JobQueue) -> None:
    built = []
    original = jobs.components.build

    def counting(kind, name, options=None):
        before = len(jobs.components._built)
        component = original(kind, name, options)
        built.extend([kind] * (len(jobs.components._built) - before))
        return component

    jobs.components.build = counting
    request = JobRequest(mode="references", references=((clips.reference, 0),), work_size=96)
    results = []
    for kind, make in (("preview", preview_work), ("colorize", colorize_work), ("colorize", colorize_work)):
        folder = jobs.new_folder(kind)
        input = stage_input(clips.gray_audio_video, folder, jobs.limits)
        job = jobs.submit(kind, folder, make(input, job_options(ColorizeOptions(), request, folder),
                                               jobs.components))
        assert job.finished.wait(120), job.phase
        assert job.state == "done", job.error
        results.append(job)
    sheet = results[0].result.sheet
    assert sheet.parent == results[0].folder and sheet.is_file()
    run = results[1]
    assert run.result.output.parent == run.folder and run.result.frames == 12
    assert run.event.kind == "done" and (run.event.frames_done, run.event.shots_done) == (12, 1)
    assert re.fullmatch(r"Colorize: done · 12 frames in [\d.]+ s \([\d.]+ frames/s\) · shots 1/1",
                        views.status_text(run, 0))
    run.state, run.phase = "running", "colorizing"  # as it was shown while it ran
    assert views.status_text(run, 0) == f"Colorize: colorizing · {views.progress_line(run.event)}"
    got = read_frames(run.result.output)
    gray = [to_gray_rgb(f)[..., 0] for f in clips.frames]
    assert len(got) == 12 and max(float(np.abs(cv2.cvtColor(g, cv2.COLOR_RGB2GRAY).astype(float) - t).mean())
                                  for g, t in zip(got, gray)) < 3.0
    assert sorted(set(built)) == ["fill", "flow"] and len(built) == 2  # loaded once, for three jobs
    gray_rgb, color = views.compare_frames(run.folder / clips.gray_audio_video.name, run.result.output, 5)
    assert gray_rgb.shape == color.shape == (64, 96, 3)
    assert np.array_equal(gray_rgb[..., 0], gray_rgb[..., 2])
    assert lab_chroma(gray_rgb).max() < 1.0 < 8.0 < lab_chroma(color).mean()


def test_jobs_on_an_image_and_a_zip_of_frames(clips, jobs: JobQueue, tmp_path: Path) -> None:
    gray = [to_gray_rgb(f) for f in clips.frames[:4]]
    archive = _zip(tmp_path / "scan.zip", {f"reel/frame_{i + 1}.png": _png_bytes(g) for i, g in enumerate(gray)})
    image = write_png(tmp_path / "photo.png", gray[0])
    request = JobRequest(mode="references", references=((clips.reference, 0),), work_size=96, fps=8)
    outputs = {}
    for name, upload in (("zip", archive), ("image", image)):
        folder = jobs.new_folder("colorize")
        input = stage_input(upload, folder, jobs.limits, request.fps)
        job = jobs.submit("colorize", folder, colorize_work(input, job_options(ColorizeOptions(), request, folder),
                                                            jobs.components))
        assert job.finished.wait(120) and job.state == "done", job.error
        outputs[name] = (input, job.result)
    (frames_dir, zipped), (photo, single) = outputs["zip"], outputs["image"]
    assert frames_dir.name == "frames" and zipped.output.name == "frames_color.mp4" and zipped.frames == 4
    from chromaflow.io.source import open_source

    with open_source(zipped.output) as src:
        assert (src.info.n_frames, float(src.info.fps)) == (4, 8.0)
    assert single.output.name == "photo_color.png" and single.frames == 1
    g, c = views.compare_frames(photo, single.output, 0)
    assert np.abs(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY).astype(int) - g[..., 0]).max() <= 1  # the gray is kept


# ---- what is shown ------------------------------------------------------------------------------------------

def test_progress_line() -> None:
    e = ProgressEvent("frame", 6, 12, 0, 1, 1.25, 4.8)
    assert views.progress_line(e) == "frames 6/12 (50 %) · shots 0/1 · 1.2 frames/s · about 5 s left"
    assert views.progress_line(ProgressEvent("start", 0, 12, 0, 1, 0.0, None)) == "frames 0/12 (0 %) · shots 0/1"
    assert format_duration(185) == "3 min 05 s" and format_duration(3720) == "1 h 02 min"


def test_palette_text_is_colors_never_a_path(tmp_path: Path) -> None:
    assert views.ui_palette("#aa3311, 2040ff").hex() == ["#aa3311", "#2040ff"]
    assert len(views.ui_palette("rust, navy, #2040ff").hex()) == 3  # names as on the command line
    assert len(views.ui_palette("auto").hex()) == 5
    photo = write_png(tmp_path / "photo.png", make_clip_frames(1)[0])
    for text in (str(photo), "photo.png", "../x", "C:\\x"):
        with pytest.raises(InputError, match="not a file"):
            views.ui_palette(text)
    with pytest.raises(InputError, match="no colors"):
        views.ui_palette("  ")
    pal = views.image_palette(make_clip_frames(1)[0])
    assert len(pal.hex()) == 5
    with pytest.raises(InputError, match="gray"):
        views.image_palette(to_gray_rgb(make_clip_frames(1)[0]))


def test_mask_overlays_outline_and_name_each_object(tmp_path: Path) -> None:
    hints = np.full((40, 60, 3), 120, np.uint8)
    write_png(tmp_path / "frame_000012_hints.png", hints)
    mask = np.zeros((40, 60), np.uint8)
    mask[10:30, 20:45] = 255
    assert cv2.imwrite(str(tmp_path / "frame_000012_mask_1_car_coco.png"), mask)
    assert cv2.imwrite(str(tmp_path / "frame_000012_mask_2_sky.png"), 255 - mask)
    assert cv2.imwrite(str(tmp_path / "frame_000012_mask_3_grass.png"), 0 * mask)  # not found there
    (tmp_path / "grounding.tsv").write_text("frame\n")
    shown = views.mask_overlays(tmp_path)
    assert [c for _, c in shown] == ["frame 12: car (coco), sky"]
    img = shown[0][0]
    assert img.shape == hints.shape
    assert img[10, 30].min() > 230  # the car's outline, white (the first outline colour; antialiased)
    assert tuple(img[20, 32]) == (120, 120, 120)  # inside: the hint picture as it was
    assert views.mask_overlays(tmp_path / "missing") == []


def test_color_picker_values() -> None:
    from chromaflow.ui.app import _hex_of

    assert _hex_of("#A8442A") == "#a8442a"
    assert _hex_of("rgba(168, 68, 42, 1)") == "#a8442a"
    assert _hex_of("rgb(255.0, 0, 300)") == "#ff00ff"
    assert _hex_of("teal") is None and _hex_of("") is None


def test_describe_upload(clips, tmp_path: Path) -> None:
    from chromaflow.ui.app import describe_upload

    assert describe_upload(clips.gray_audio_video) == (
        "video 96×64, 12 frames at 12 fps (1 s), 1 audio stream (kept)")
    assert describe_upload(clips.reference) == "image 96×64"
    archive = _zip(tmp_path / "f.zip", {"a/1.png": b"x", "a/2.png": b"y", "x.txt": b""})
    assert describe_upload(archive) == "zip of 2 images (frames, in natural name order)"


# ---- the command --------------------------------------------------------------------------------------------

def test_ui_command_passes_limits_and_warns_off_loopback(monkeypatch, tmp_path: Path) -> None:
    import chromaflow.ui.app as app

    calls = []
    monkeypatch.setattr(app, "serve", lambda *a: calls.append(a))
    config = tmp_path / "run.toml"
    config.write_text("seed = 7\n[engine]\nwork_max_side = 160\n")
    r = invoke("ui", "--port", "7999", "--max-upload-mb", "20", "--max-seconds", "30", "-c", config)
    assert r.exit_code == 0, r.output
    host, port, limits, base = calls[0]
    assert (host, port, limits.max_upload_mb, limits.max_seconds) == ("127.0.0.1", 7999, 20.0, 30.0)
    assert (base.seed, base.engine.work_max_side) == (7, 160)
    assert "listening on" not in r.output
    r = invoke("ui", "--host", "0.0.0.0")
    assert r.exit_code == 0 and "warning: listening on 0.0.0.0: anyone who can reach this machine" in r.output
    r = invoke("ui", "--host", "::1")
    assert "listening on" not in r.output


def test_ui_without_gradio_is_a_one_line_error(monkeypatch, tmp_path: Path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "gradio", None)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    for name in ("GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED"):  # serve sets them: restored after the test
        monkeypatch.setenv(name, "")
    r = invoke("ui")
    assert r.exit_code == 3 and 'chromaflow ui needs Gradio: pip install "chromaflow[ui]"' in r.output
    assert not list(tmp_path.glob("chromaflow-ui-*"))  # the job root made for it is gone


def test_ui_needs_no_gradio_to_import() -> None:
    import subprocess
    import sys

    code = ("import sys; sys.modules['gradio'] = None; import chromaflow.ui.jobs, chromaflow.ui.views, "
            "chromaflow.ui.app; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert out.stdout.strip() == "ok", out.stderr
