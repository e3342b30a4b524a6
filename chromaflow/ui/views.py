"""What the web app shows, as plain data: status lines, palettes, mask overlays, gray | colour frames.

No Gradio here either; every function takes paths inside a job's folder (or
arrays) and returns text or ``(H, W, 3)`` ``uint8`` RGB images.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from chromaflow.errors import InputError
from chromaflow.progress import ProgressEvent, format_duration
from chromaflow.ui.jobs import Job

_MASK = re.compile(r"^frame_(\d+)_mask_(\d+)_([a-z0-9-]+?)(?:_([a-z0-9-]+))?\.png$")
#: outline colours of the objects, in order
_OUTLINES = ((255, 255, 255), (255, 220, 0), (0, 230, 255), (255, 80, 200), (120, 255, 120))


def progress_line(event: ProgressEvent) -> str:
    """``"frames 6/12 (50 %) · shots 0/1 · 1.2 frames/s · about 5 s left"``."""
    pct = 100.0 * event.frames_done / max(1, event.frames_total)
    parts = [f"frames {event.frames_done}/{event.frames_total} ({pct:.0f} %)",
             f"shots {event.shots_done}/{event.shots_total}"]
    if event.fps > 0:
        parts.append(f"{event.fps:.1f} frames/s")
    if event.eta is not None and event.kind not in ("mux", "done"):
        parts.append(f"about {format_duration(event.eta)} left")
    return " · ".join(parts)


def status_text(job: Job, ahead: int) -> str:
    """The status shown while ``job`` waits or runs, and when it ended (Markdown, one or two lines)."""
    what = "Preview" if job.kind == "preview" else "Colorize"
    if job.state == "queued":
        line = f"{what}: waiting, {ahead} job{'s' if ahead != 1 else ''} ahead"
    elif job.state == "failed":
        line = f"{what}: **error**: {job.error}"
    elif job.state == "cancelled":
        line = f"{what}: cancelled; nothing was written"
    else:
        line = f"{what}: {job.phase}"
        r = job.result
        if job.state == "done" and job.kind == "preview" and r is not None:
            line += f" · {r.keyframes} keyframe{'s' if r.keyframes != 1 else ''} of {r.shots} " \
                    f"shot{'s' if r.shots != 1 else ''} in {r.seconds:.1f} s"
        elif job.state == "done" and job.kind == "colorize" and r is not None:
            rate = f" ({r.fps:.1f} frames/s)" if r.frames > 1 else ""
            shots = f" · shots {job.event.shots_done}/{job.event.shots_total}" if job.event is not None else ""
            line += f" · {r.frames} frame{'s' if r.frames != 1 else ''} in {r.seconds:.1f} s{rate}{shots}"
        elif job.event is not None and job.kind == "colorize":
            line += f" · {progress_line(job.event)}"
    warnings = "".join(f"\n\n⚠ {w}" for w in job.warnings)
    return line + warnings


def ui_palette(text: str):
    """The palette of the colours typed or picked (hex codes, colour names, or ``auto``), never a path.

    Returns:
        a :class:`~chromaflow.guidance.palette.Palette`.

    Raises:
        InputError: empty, invalid colours, more than five, or something that looks like a path.
    """
    from chromaflow.guidance.palette import parse_hex_list, parse_palette_spec

    spec = (text or "").strip()
    if not spec:
        raise InputError("no colors: pick some, or take them from an image")
    if spec == "auto":
        return parse_palette_spec("auto")
    if any(c in spec for c in "/\\") or re.search(r"\.[A-Za-z]", spec):
        raise InputError("type colors (hex codes such as #aa3311), not a file: upload an image to take its colors")
    return parse_hex_list(spec)


def image_palette(rgb: np.ndarray, seed: int = 0):
    """The palette of an uploaded ``(H, W, 3)`` ``uint8`` image (k-means in Lab).

    Raises:
        InputError: the image is gray.
    """
    from chromaflow.guidance.palette import is_grayscale_image, palette_from_image

    rgb = np.ascontiguousarray(rgb[..., :3])
    if is_grayscale_image(rgb):
        raise InputError("this image is gray: it has no colors to take")
    return palette_from_image(rgb, seed=seed)


def read_rgb(path: Path) -> np.ndarray:
    """An image file as ``(H, W, 3)`` ``uint8`` RGB."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"{path.name}: cannot read this image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def mask_overlays(folder: Path) -> list[tuple[np.ndarray, str]]:
    """The grounded objects of a prompt drawn on their keyframes, from ``--save-masks`` files.

    Each grounded frame's hint picture (gray with the hint colours laid over it)
    gets every object's mask outlined and named.

    Returns:
        ``(image, caption)`` per grounded frame, in frame order (``caption``:
        ``"frame 12: car (coco), sky (parts)"``); empty when nothing was grounded.
    """
    if folder is None or not Path(folder).is_dir():
        return []
    masks: dict[int, list[tuple[int, str, str, Path]]] = {}
    for p in Path(folder).iterdir():
        m = _MASK.match(p.name)
        if m:
            masks.setdefault(int(m.group(1)), []).append((int(m.group(2)), m.group(3), m.group(4) or "", p))
    out = []
    for frame in sorted(masks):
        hints = Path(folder) / f"frame_{frame:06d}_hints.png"
        if not hints.is_file():
            continue
        img = read_rgb(hints)
        names = []
        for k, name, grounder, path in sorted(masks[frame]):
            mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if mask is None:
                continue
            if mask.shape != img.shape[:2]:
                mask = cv2.resize(mask, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
            color = _OUTLINES[(k - 1) % len(_OUTLINES)]
            contours, _ = cv2.findContours((mask >= 128).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            if not contours:  # an object not found on this frame
                continue
            cv2.drawContours(img, contours, -1, color, 1, cv2.LINE_AA)
            x, y, _, _ = cv2.boundingRect(max(contours, key=cv2.contourArea))
            cv2.putText(img, name, (x + 2, max(10, y + 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, color, 1, cv2.LINE_AA)
            names.append(f"{name} ({grounder})" if grounder else name)
        out.append((img, f"frame {frame}: {', '.join(names) or 'nothing found'}"))
    return out


def frame_count(path: Path) -> int:
    from chromaflow.io.source import open_source

    with open_source(path) as src:
        return src.info.n_frames


def compare_frames(input: Path, output: Path, index: int, fps: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``index`` of ``input`` in gray and of ``output`` (the result), both ``(H, W, 3)`` ``uint8`` RGB."""
    from chromaflow.color.lab import rgb_to_gray
    from chromaflow.io.source import open_source

    def frame(path: Path, rate) -> np.ndarray:
        with open_source(path, fps=rate) as src:
            i = int(np.clip(index, 0, src.info.n_frames - 1))
            for f in src.frames(i, i + 1):
                return f.rgb
        raise InputError(f"{path.name}: frame {index} could not be decoded")

    gray = rgb_to_gray(frame(input, fps))
    return np.repeat(gray[..., None], 3, axis=2), frame(output, None)
