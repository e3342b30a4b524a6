"""File naming helpers: natural sort order and the extensions chromaflow reads."""

from __future__ import annotations

import re
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"})
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".mov", ".mkv", ".avi", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".ogv"}
)
#: Containers chromaflow writes (H.264 video).
VIDEO_OUTPUT_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".m4v", ".avi"})

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders ``frame2`` before ``frame10``."""
    parts = _DIGITS.split(name)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts)


def natural_sorted(paths: list[Path]) -> list[Path]:
    """``paths`` sorted by file name in natural order."""
    return sorted(paths, key=lambda p: natural_key(p.name))


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(directory: Path) -> list[Path]:
    """Image files directly inside ``directory``, naturally sorted (hidden files skipped)."""
    files = [
        p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".") and is_image_path(p)
    ]
    return natural_sorted(files)
