"""Shared fixtures: small synthetic clips written with PyAV, frame directories, references.

The synthetic clip (96x64, 12 frames at 12 fps) is a textured red square and a
textured blue disc moving a few pixels per frame over a textured green-yellow
gradient.  The three parts have well separated gray levels (square ~97, disc
~52, background ~145-195), so a luminance-keyed colorizer can tell them apart.
Everything is seeded: every run builds the same pixels.

Session fixtures are shared between tests: tests must never write into them.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

# Tests never download and never read a machine's own model files: the model store is offline, with
# an empty cache of its own (tests that need a model make one, or opt in to ../shared/models).
os.environ["CHROMAFLOW_OFFLINE"] = "1"
os.environ.pop("CHROMAFLOW_MODEL_DIR", None)
os.environ["CHROMAFLOW_CACHE"] = tempfile.mkdtemp(prefix="chromaflow-test-cache-")

from chromaflow.io import open_source  # noqa: E402

W, H = 96, 64
N_FRAMES = 12
FPS = 12
AUDIO_RATE = 48000

RED = (230, 40, 40)  # gray ~97
BLUE = (30, 40, 170)  # gray ~52
SQUARE = 18  # side of the square
DISC_R = 8  # radius of the disc


def square_box(i: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the red square in frame ``i`` (x1, y1 exclusive)."""
    x0, y0 = 10 + 2 * i, 12 + i
    return x0, y0, x0 + SQUARE, y0 + SQUARE


def disc_center(i: int) -> tuple[int, int]:
    """(cx, cy) of the blue disc in frame ``i``."""
    return 78 - 2 * i, 50


def _background(rng: np.random.Generator) -> np.ndarray:
    x = np.linspace(0.0, 1.0, W, dtype=np.float32)[None, :, None]
    y = np.linspace(0.0, 1.0, H, dtype=np.float32)[:, None, None]
    left = np.array([120, 170, 90], np.float32)
    right = np.array([170, 220, 120], np.float32)
    bg = left + (right - left) * x + np.float32(10.0) * (y - 0.5)
    noise = cv2.GaussianBlur(rng.normal(0.0, 6.0, (H, W)).astype(np.float32), (0, 0), 0.8)
    return bg + noise[..., None]


def _patch(rng: np.random.Generator, color: tuple[int, int, int], size: int) -> np.ndarray:
    noise = rng.uniform(-6.0, 6.0, (size, size, 1)).astype(np.float32)
    return np.array(color, np.float32) + noise


def make_clip_frames(n: int = N_FRAMES) -> list[np.ndarray]:
    """The synthetic color clip: ``n`` ``(H, W, 3)`` ``uint8`` RGB frames."""
    rng = np.random.default_rng(1234)
    bg = _background(rng)
    sq = _patch(rng, RED, SQUARE)
    disc = _patch(rng, BLUE, 2 * DISC_R + 1)
    yy, xx = np.mgrid[-DISC_R : DISC_R + 1, -DISC_R : DISC_R + 1]
    disc_mask = (xx * xx + yy * yy) <= DISC_R * DISC_R
    frames = []
    for i in range(n):
        f = bg.copy()
        x0, y0, x1, y1 = square_box(i)
        f[y0:y1, x0:x1] = sq
        cx, cy = disc_center(i)
        region = f[cy - DISC_R : cy + DISC_R + 1, cx - DISC_R : cx + DISC_R + 1]
        region[disc_mask] = disc[disc_mask]
        frames.append(np.clip(np.rint(f), 0, 255).astype(np.uint8))
    return frames


def to_gray_rgb(rgb: np.ndarray) -> np.ndarray:
    """OpenCV RGB2GRAY, repeated on three channels."""
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return np.repeat(g[..., None], 3, axis=2)


def write_video(
    path: Path,
    frames: list[np.ndarray],
    fps: int = FPS,
    audio: bool = False,
    crf: int = 4,
) -> Path:
    """Write ``frames`` as H.264 yuv420p (plus a 440 Hz AAC sine when ``audio``)."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"crf": str(crf), "preset": "medium"}
        a_s = None
        if audio:
            a_s = out.add_stream("aac", rate=AUDIO_RATE)
            a_s.layout = "mono"
        for i, rgb in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            vf.pts = i
            for p in vs.encode(vf):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
        if a_s is not None:
            n = int(AUDIO_RATE * len(frames) / fps)
            t = np.arange(n, dtype=np.float64) / AUDIO_RATE
            samples = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
            for i in range(0, n, 1024):
                chunk = np.ascontiguousarray(samples[i : i + 1024][None, :])
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                af.sample_rate = AUDIO_RATE
                af.pts = i
                for p in a_s.encode(af):
                    out.mux(p)
            for p in a_s.encode(None):
                out.mux(p)
    return path


def write_png(path: Path, rgb: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def write_frame_dir(directory: Path, frames: list[np.ndarray], stem: str = "frame_") -> Path:
    """PNG frames named ``frame_1.png .. frame_N.png`` (1-based, no zero padding)."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, rgb in enumerate(frames):
        write_png(directory / f"{stem}{i + 1}.png", rgb)
    return directory


def read_frames(path: str | Path) -> list[np.ndarray]:
    """All frames of a video, frame directory or image, as RGB ``uint8`` arrays."""
    with open_source(path) as src:
        return [f.rgb for f in src]


def read_pts(path: str | Path) -> list[int]:
    with open_source(path) as src:
        return [f.pts for f in src]


def gray_of(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def lab_chroma(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel Lab chroma sqrt(a^2 + b^2)."""
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    return np.hypot(lab[..., 1], lab[..., 2])


def audio_packets(path: str | Path) -> tuple[str | None, int]:
    """(codec name of the first audio stream, number of non-empty audio packets)."""
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None, 0
        s = c.streams.audio[0]
        name = s.codec_context.name
        count = sum(1 for p in c.demux(s) if p.size > 0)
    return name, count


def list_dir(directory: Path) -> list[str]:
    """Every name in ``directory``, hidden ones included, sorted."""
    return sorted(p.name for p in directory.iterdir())


@dataclass(frozen=True)
class Clips:
    """Paths of the synthetic media (read-only, shared by the session)."""

    frames: list[np.ndarray]  # color ground truth
    color_video: Path  # color H.264, no audio
    gray_video: Path  # gray H.264, no audio
    gray_audio_video: Path  # gray H.264 + AAC sine
    frame_dir: Path  # color PNGs frame_1 .. frame_12
    gray_frame_dir: Path  # gray PNGs frame_1 .. frame_12
    reference: Path  # color frame 0 as PNG
    fps: Fraction = Fraction(FPS)


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    root = tmp_path_factory.mktemp("media")
    frames = make_clip_frames()
    gray = [to_gray_rgb(f) for f in frames]
    return Clips(
        frames=frames,
        color_video=write_video(root / "color.mp4", frames),
        gray_video=write_video(root / "gray.mp4", gray),
        gray_audio_video=write_video(root / "gray_audio.mp4", gray, audio=True),
        frame_dir=write_frame_dir(root / "frames_color", frames),
        gray_frame_dir=write_frame_dir(root / "frames_gray", gray),
        reference=write_png(root / "ref0.png", frames[0]),
    )


@pytest.fixture(autouse=True)
def _reset_chromaflow_logger():
    """The CLI sets the ``chromaflow`` logger up (own handler, no propagation); undo that."""
    yield
    logger = logging.getLogger("chromaflow")
    logger.handlers.clear()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


TINY_MODEL_CONFIG = dict(widths=(8, 8, 16, 16), emb_dim=16, heads=2)


def make_tiny_model_file(path: Path, seed: int = 0) -> Path:
    """A tiny randomly initialised chroma model (fast stand-in for the shipped one)."""
    import torch

    from chromaflow.models.chroma_unet import ChromaUNet, ChromaUNetConfig
    from chromaflow.models.weights import save_model

    torch.manual_seed(seed)
    net = ChromaUNet(ChromaUNetConfig(**TINY_MODEL_CONFIG))
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().sum() == 0:  # zero-initialised output layers: give them weights
                p.normal_(0, 0.05)
    save_model(net, path, kind="diffusion")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a tiny random model file (``--model`` / ``ModelOptions(weights=...)``)."""
    return make_tiny_model_file(tmp_path_factory.mktemp("model") / "tiny.safetensors")
