"""Palettes from the shipped colour mixture (``auto``), from videos, and the ``palette`` command."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import make_clip_frames, to_gray_rgb, write_frame_dir
from typer.testing import CliRunner

from chromaflow.cli import app
from chromaflow.color.lab import rgb_to_lab
from chromaflow.errors import InputError
from chromaflow.guidance.grounding import imagenet_classes
from chromaflow.guidance.palette import auto_palette, palette_from_video, parse_palette_spec, weighted_kmeans
from chromaflow.guidance.tags import tag_lexicon


def test_auto_palette_is_reproducible_and_varied():
    a, b, c = auto_palette(0), auto_palette(0), auto_palette(1)
    assert a.hex() == b.hex()
    assert a.hex() != c.hex()
    assert a.rgb.shape == (5, 3) and a.rgb.dtype == np.uint8
    lab = rgb_to_lab(a.rgb.reshape(1, -1, 3)).reshape(-1, 3)
    assert np.all(np.diff(lab[:, 0]) >= -0.5)  # ordered dark to light
    assert np.hypot(lab[:, 1], lab[:, 2]).mean() > 10.0  # fitted on saturated colours
    assert parse_palette_spec("auto", seed=3).hex() == auto_palette(3).hex()


def test_tags_palette_needs_a_video():
    with pytest.raises(InputError, match="tags"):
        parse_palette_spec("tags")


def test_tag_lexicon_is_well_formed():
    lexicon = tag_lexicon()
    assert 900 <= len(lexicon) <= 1000 and all(0 <= c < 1000 for c in lexicon)
    for colors, shares in lexicon.values():
        assert colors.shape == (3, 3) and shares.shape == (3,)
        assert abs(shares.sum() - 1) < 1e-3 and np.all(np.diff(shares) <= 1e-9)
        assert np.all((colors[:, 0] >= 0) & (colors[:, 0] <= 100))


def test_tag_palette_follows_the_classifier(monkeypatch):
    import chromaflow.guidance.tags as tags

    lexicon = tag_lexicon()
    a, b = sorted(lexicon)[:2]
    prob = np.zeros(1000)
    prob[a] = 0.9
    prob[b] = 0.1
    monkeypatch.setattr(tags, "class_probabilities", lambda frames, encoder=None: prob)
    tp = tags.tag_palette([np.zeros((8, 8), np.uint8)], k=5, seed=0, top=2)
    assert [t[0] for t in tp.tags] == [imagenet_classes().names[a], imagenet_classes().names[b]]
    # 6 lexicon colours clustered into 5: every one of them is within reach of a palette colour
    pal_lab = tp.palette.lab
    for c in np.concatenate([lexicon[a][0], lexicon[b][0]]):
        assert np.min(np.linalg.norm(pal_lab - c, axis=1)) < 25
    assert abs(tp.palette.weights.sum() - 1) < 1e-5
    assert tags.tag_palette([np.zeros((8, 8), np.uint8)], seed=0, top=2).palette.hex() == tp.palette.hex()


def test_tags_palette_of_a_video(tmp_path):
    d = write_frame_dir(tmp_path / "clip", make_clip_frames(4))
    pal = parse_palette_spec("tags", video=d)
    assert pal.rgb.shape == (5, 3) and pal.rgb.dtype == np.uint8
    assert parse_palette_spec("tags", video=d).hex() == pal.hex()


def test_weighted_kmeans():
    pts = np.array([[0.0, 0], [0, 1], [10, 10], [10, 11]])
    centers, shares = weighted_kmeans(pts, np.array([1.0, 1, 3, 3]), 2, seed=0)
    assert np.allclose(shares, [0.75, 0.25])
    assert np.allclose(centers, [[10, 10.5], [0, 0.5]])


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
    tags = CliRunner().invoke(app, ["palette", "tags", "-o", str(tmp_path / "t.png")])
    assert tags.exit_code != 0 and "--video" in tags.output and "Traceback" not in tags.output
    clip = write_frame_dir(tmp_path / "clip", make_clip_frames(3))
    tags = CliRunner().invoke(app, ["palette", "tags", "--video", str(clip), "-o", str(tmp_path / "t.png")])
    assert tags.exit_code == 0, tags.output
    assert len(tags.stdout.strip().split(",")) == 5 and (tmp_path / "t.png").exists()
