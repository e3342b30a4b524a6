"""Palettes from the shipped colour mixture (``auto``), from videos, and the ``palette`` command."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import make_clip_frames, to_gray_rgb, write_frame_dir
from typer.testing import CliRunner

from chromaflow.cli import app
from chromaflow.color.lab import rgb_to_lab
from chromaflow.errors import InputError, NotAvailableError
from chromaflow.guidance.palette import auto_palette, palette_from_video, parse_palette_spec


def test_auto_palette_is_reproducible_and_varied():
    a, b, c = auto_palette(0), auto_palette(0), auto_palette(1)
    assert a.hex() == b.hex()
    assert a.hex() != c.hex()
    assert a.rgb.shape == (5, 3) and a.rgb.dtype == np.uint8
    lab = rgb_to_lab(a.rgb.reshape(1, -1, 3)).reshape(-1, 3)
    assert np.all(np.diff(lab[:, 0]) >= -0.5)  # ordered dark to light
    assert np.hypot(lab[:, 1], lab[:, 2]).mean() > 10.0  # fitted on saturated colours
    assert parse_palette_spec("auto", seed=3).hex() == auto_palette(3).hex()


def test_tags_palette_not_available_yet():
    with pytest.raises(NotAvailableError):
        parse_palette_spec("tags")


def test_palette_from_video_frames(tmp_path):
    frames = make_clip_frames(6)
    d = write_frame_dir(tmp_path / "clip", frames)
    pal = palette_from_video(d)
    lab = rgb_to_lab(pal.rgb.reshape(1, -1, 3)).reshape(-1, 3)
    assert (lab[:, 1] > 25).any()  # the red square is in there
    gray_dir = write_frame_dir(tmp_path / "gray", [to_gray_rgb(f) for f in frames])
    with pytest.raises(InputError):
        palette_from_video(gray_dir)


def test_palette_command_prints_and_writes_swatch(tmp_path):
    out = tmp_path / "sw.png"
    res = CliRunner().invoke(app, ["palette", "#ff0000,#00ff00", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "#ff0000,#00ff00" in res.output
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] == 2 * 120
    assert tuple(img[10, 10]) == (0, 0, 255)  # BGR red in the first block
    again = CliRunner().invoke(app, ["palette", "auto", "-o", str(out)])
    assert again.exit_code != 0 and "exists" in again.output
    bad = CliRunner().invoke(app, ["palette", "#12345z", "-o", str(tmp_path / "x.png")])
    assert bad.exit_code != 0 and "invalid hex" in bad.output
