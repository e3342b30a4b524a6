"""The everyday details of the command line: --version, help and tables at 80 columns, single images,
palette colour names, progress that agrees with the summary."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
from conftest import make_clip_frames, write_frame_dir, write_png
from typer.testing import CliRunner

from chromaflow.cli import app
from chromaflow.guidance.palette import parse_palette_spec
from chromaflow.guidance.prompt import color_of
from chromaflow.progress import RunProgress

runner = CliRunner()


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def test_version() -> None:
    r = invoke("--version")
    assert r.exit_code == 0
    assert r.stdout.strip() == f"chromaflow {version('chromaflow')}"


def test_help_keeps_option_names_whole_at_80_columns() -> None:
    import typer

    env = dict(os.environ, COLUMNS="80")
    out = subprocess.run([sys.executable, "-m", "chromaflow.cli", "colorize", "--help"], env=env,
                         capture_output=True, text=True, timeout=120).stdout
    assert "Usage:" in out and "INPUT..." in out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out
    command = typer.main.get_command(app).commands["colorize"]
    names = [o for p in command.params if p.param_type_name == "option" for o in p.opts + p.secondary_opts]
    assert "--reference-frame" in names and "--per-shot-palette" in names
    for name in names:
        assert re.search(rf"(^|[\s,/]){re.escape(name)}([\s,=/]|$)", out, re.M), name


def test_eval_table_fits_80_columns_without_cut_values(tmp_path: Path) -> None:
    frames = make_clip_frames(4)
    noisy = [np.clip(f.astype(int) + 3 * (i + 1), 0, 255).astype(np.uint8) for i, f in enumerate(frames)]
    for name in ("clip_with_a_long_name_a", "clip_with_a_long_name_b"):
        write_frame_dir(tmp_path / "gt" / name, frames)
        write_frame_dir(tmp_path / "pred" / name, noisy)
    r = invoke("eval", tmp_path / "pred", tmp_path / "gt", "--json", tmp_path / "m.json", env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert "…" not in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 80
    data = json.loads((tmp_path / "m.json").read_text())
    for metric, value in data["mean"].items():
        assert metric in r.stdout and f"{value:.5g}" in r.stdout, metric


def test_single_image_wording(tmp_path: Path) -> None:
    gray = np.repeat(make_clip_frames(1)[0].mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    img = write_png(tmp_path / "photo.png", gray)
    r = invoke("colorize", img, "-o", tmp_path / "out.png", "--work-size", "64", "--progress", "log")
    assert r.exit_code == 0, r.output
    assert "colorizing the image with the colorizer (automatic)" in r.stderr
    for wrong in ("1 frames", "frames/s", "propagated", "keyframes"):
        assert wrong not in r.stderr, (wrong, r.stderr)
    assert re.search(r"wrote .*out\.png in [\d.]+ s", r.stderr)


def test_palette_accepts_color_names(tmp_path: Path) -> None:
    named = parse_palette_spec("rust, navy, sand")
    assert named.hex() == ["#" + "".join(f"{v:02x}" for v in color_of(n)) for n in ("rust", "navy", "sand")]
    assert parse_palette_spec("rust navy sand").hex() == named.hex()
    assert parse_palette_spec("sky blue, #c9b48f").hex() == ["#87ceeb", "#c9b48f"]  # multi-word names, hex mixed
    r = invoke("palette", "rust, navy, sand", "-o", tmp_path / "sw.png")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "#b7410e,#000080,#c2b280"
    r = invoke("palette", "rust, mauvish-thing", "-o", tmp_path / "sw2.png")
    assert r.exit_code == 2 and "unknown color in palette: 'mauvish-thing'" in r.stderr


def test_progress_shows_keyframes_and_agrees_with_the_summary(caplog) -> None:
    events = []
    progress = RunProgress("log", [events.append], interval=0.0, label="clip")
    with caplog.at_level(logging.INFO, logger="chromaflow"):
        t0 = time.perf_counter()
        progress.start(6, 2)
        time.sleep(0.05)  # colouring the first shot's keyframes
        for _ in range(3):
            progress.frame()
        progress.shot(3, counted=True)
        for _ in range(3):
            progress.frame()
        progress.shot(3, counted=True)
        progress.mux()
        time.sleep(0.05)  # writing the output
        progress.close()
        seconds = time.perf_counter() - t0
    assert [e.stage for e in events[:2]] == ["keyframes", "frames"]
    assert events[4].kind == "shot" and events[4].stage == "keyframes"  # the second shot starts with its keyframes
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "clip: 0/6 frames (0%), shots 0/2, colouring keyframes"  # no speed before a frame
    done = events[-1]
    assert done.kind == "done" and done.frames_done == 6
    # the last figure is over the whole run (keyframes and writing included), as the summary line's
    assert abs(done.fps - 6 / seconds) < 0.05 * (6 / seconds)
    assert lines[-1].startswith("clip: 6/6 frames (100%), shots 2/2, ") and lines[-1].endswith(" frames/s")


def test_progress_of_a_single_image_says_nothing(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="chromaflow"):
        progress = RunProgress("log", label="photo.png")
        progress.start(1, 1)
        progress.frame()
        progress.shot(1, counted=True)
        progress.close()
    assert caplog.text == ""
