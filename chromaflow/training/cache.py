"""Training data: photos -> cached encoder features, chroma targets and conditions.

The encoder (EfficientNet-Lite0) is frozen, so its features are computed once
per augmented crop and stored; training then runs only the small denoiser,
which is what makes CPU training practical.

For every crop (``crop_size`` square, random scale, aspect and flip for
training crops, a centre crop for validation) the cache holds, as ``.npy``
files in one folder (memory-mapped when read):

========== ====================== ======= =======================================
file       shape                  dtype   content
========== ====================== ======= =======================================
f8         (N, 40, s/8, s/8)      float16 encoder features at stride 8
f16        (N, 112, s/16, s/16)   float16 encoder features at stride 16
f32        (N, 320, s/32, s/32)   float16 encoder features at stride 32
lightness  (N, s/4, s/4)          float16 Lab L of the crop, area-resized
ab         (N, 2, s/4, s/4)       float16 Lab ab of the crop, area-resized
palette    (N, 5, 3)              float32 k-means palette of the crop, Lab
caption    (N,)                   int32   index into ``captions.json``
text       (M, 384)               float16 sentence embedding of each caption
========== ====================== ======= =======================================

Captions name the photo's subject (the ImageNet class in the file name, or
"cat"/"dog"/"scene" for the other sets) and the basic names of the crop's two
dominant colours: ``"a photo of a goldfish, mostly orange and blue"``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from chromaflow.color.lab import rgb_to_gray, rgb_to_lab
from chromaflow.errors import InputError
from chromaflow.guidance.color_names import basic_color_name
from chromaflow.guidance.palette import palette_from_image
from chromaflow.models.efficientnet import gray_input, load_efficientnet_lite0
from chromaflow.progress import track

PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png")
FEATURE_FILES = ("f8", "f16", "f32")


def list_photos(root: str | Path) -> list[Path]:
    """Photos under ``root`` (sorted by name, so the split is reproducible)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"photo folder not found: {root}")
    photos = sorted(p for p in root.iterdir() if p.suffix.lower() in PHOTO_EXTENSIONS)
    if not photos:
        raise InputError(f"no photos (.jpg/.png) in {root}")
    return photos


#: A frame's clip: its file name without the trailing frame index (``camvid_0006R0_f00960`` -> ``camvid_0006R0``).
_FRAME_INDEX = re.compile(r"_f?\d+$")


def clip_of(path: Path) -> str:
    """The clip a frame file belongs to (see ``../shared/data/frames/README.md`` for the naming)."""
    return _FRAME_INDEX.sub("", path.stem)


def split_frames(frames: list[Path], val_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Seeded split of video frames into (train, validation) *by clip*: no clip has frames on both sides.

    ``val_fraction`` is the share of clips held out (at least one when there are two clips or more).
    """
    clips = sorted({clip_of(p) for p in frames})
    order = np.random.default_rng(seed).permutation(len(clips))
    n_val = int(round(len(clips) * val_fraction))
    if len(clips) > 1:
        n_val = min(max(n_val, 1), len(clips) - 1)
    held = {clips[i] for i in order[:n_val]}
    val = sorted(p for p in frames if clip_of(p) in held)
    train = sorted(p for p in frames if clip_of(p) not in held)
    return train, val


def split_photos(photos: list[Path], val_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Seeded split into (train, validation); the validation share is ``val_fraction``."""
    order = np.random.default_rng(seed).permutation(len(photos))
    n_val = int(round(len(photos) * val_fraction))
    val = sorted(photos[i] for i in order[:n_val])
    train = sorted(photos[i] for i in order[n_val:])
    return train, val


#: Subjects of the video-frame sources without a clip name that says it.
_FRAME_SUBJECTS = {"camvid": "street", "intel": "room", "mmaction2": "scene"}


def subject_of(path: Path) -> str:
    """What a photo or frame shows, from its file name (see ``../shared/README.md`` for the naming)."""
    stem = path.stem.lower()
    source = stem.split("_", 1)[0]
    if source in _FRAME_SUBJECTS:
        return _FRAME_SUBJECTS[source]
    if source in ("davis16train", "cotracker"):
        return clip_of(path).lower().split("_", 1)[1].replace("-", " ")
    m = re.match(r"^a_n\d+_(.+)$", stem)
    if m:
        return m.group(1).replace("_", " ")
    m = re.match(r"^b_n\d+_\d+_(.+)$", stem)
    if m:
        return m.group(1).replace("_", " ")
    if stem.startswith("d_pets"):
        if "cat" in stem:
            return "cat"
        if "dog" in stem:
            return "dog"
    return "scene"


def caption_for(subject: str, palette_lab: np.ndarray, weights: np.ndarray) -> str:
    """``"a photo of a <subject>, mostly <c1> and <c2>"`` from the two largest distinct palette colours."""
    names: list[str] = []
    for i in np.argsort(-weights, kind="stable"):
        name = basic_color_name(palette_lab[i])
        if name not in names:
            names.append(name)
        if len(names) == 2:
            break
    article = "an" if subject[:1] in "aeiou" else "a"
    colours = " and ".join(names)
    return f"a photo of {article} {subject}, mostly {colours}"


@dataclass(frozen=True)
class CacheSpec:
    """How to build a cache.

    Attributes:
        crop_size: side of the square crops fed to the encoder (multiple of 32).
        crops_per_photo: random crops per photo (1 centre crop when ``train`` is False).
        train: random crops and flips (True) or a single centre crop (False).
        seed: seed of the crops.
    """

    crop_size: int = 224
    crops_per_photo: int = 2
    train: bool = True
    seed: int = 0


def _random_crop(rgb: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = rgb.shape[:2]
    area = h * w * rng.uniform(0.35, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw = int(round(min(w, np.sqrt(area * aspect))))
    ch = int(round(min(h, np.sqrt(area / aspect))))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    crop = cv2.resize(rgb[y0 : y0 + ch, x0 : x0 + cw], (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def at_least(rgb: np.ndarray, size: int) -> np.ndarray:
    """``rgb`` upscaled (bicubic) so that its short side is at least ``size``; unchanged if it is."""
    if min(rgb.shape[:2]) >= size:
        return rgb
    s = size / min(rgb.shape[:2])
    return cv2.resize(rgb, (round(rgb.shape[1] * s + 0.5), round(rgb.shape[0] * s + 0.5)),
                      interpolation=cv2.INTER_CUBIC)


def _centre_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = size / min(h, w)
    rgb = cv2.resize(rgb, (max(size, round(w * s)), max(size, round(h * s))), interpolation=cv2.INTER_AREA)
    h, w = rgb.shape[:2]
    y0, x0 = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(rgb[y0 : y0 + size, x0 : x0 + size])


def crop_targets(crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the network learns from a crop: ``(L, ab)`` area-resized to the stride-4 grid.

    Args:
        crop: ``(s, s, 3)`` ``uint8`` sRGB, ``s`` a multiple of 4.

    Returns:
        ``(s/4, s/4)`` L in ``[0, 100]`` and ``(2, s/4, s/4)`` ab (Lab units), ``float32``.
    """
    g = crop.shape[0] // 4
    small = cv2.resize(rgb_to_lab(crop), (g, g), interpolation=cv2.INTER_AREA)
    return small[..., 0], np.ascontiguousarray(small[..., 1:].transpose(2, 0, 1))


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"cannot read image: {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)



def build_cache(
    photos: list[Path],
    out_dir: str | Path,
    spec: CacheSpec,
    text_encoder=None,
    batch_size: int = 32,
    quiet: bool = False,
    log=None,
) -> Path:
    """Compute and store the cache described in the module docstring.

    Args:
        photos: photo paths.
        out_dir: folder for the ``.npy`` files (created; a finished cache is
            marked by ``meta.json`` and not rebuilt).
        spec: crops and seed.
        text_encoder: a :class:`chromaflow.models.text.TextEncoder` (or any
            object with ``encode(list[str]) -> (M, 384) array``).
        batch_size: crops per encoder batch.
        quiet: no progress bar.
        log: optional ``callable(str)`` told about progress every 500 photos.

    Returns:
        ``out_dir``.
    """
    out = Path(out_dir)
    meta_path = out / "meta.json"
    if meta_path.exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    size = spec.crop_size
    if size % 32:
        raise ValueError("crop_size must be a multiple of 32")
    per = spec.crops_per_photo if spec.train else 1
    n = len(photos) * per
    g = size // 4
    shapes = {"f8": (n, 40, size // 8, size // 8), "f16": (n, 112, size // 16, size // 16),
              "f32": (n, 320, size // 32, size // 32)}
    arrays = {k: np.lib.format.open_memmap(out / f"{k}.npy.part", "w+", np.float16, v) for k, v in shapes.items()}
    lightness = np.zeros((n, g, g), np.float16)
    ab = np.zeros((n, 2, g, g), np.float16)
    palettes = np.zeros((n, 5, 3), np.float32)
    captions: list[str] = []
    caption_index: dict[str, int] = {}
    caption_of = np.zeros(n, np.int32)
    encoder = load_efficientnet_lite0(pretrained=True)
    rng = np.random.default_rng(spec.seed)

    def crops_of(path: Path) -> list[np.ndarray]:
        rgb = read_rgb(path)
        if not spec.train:
            return [_centre_crop(rgb, size)]
        rgb = at_least(rgb, size)
        return [_random_crop(rgb, size, rng) for _ in range(per)]

    pending: list[np.ndarray] = []
    start = 0

    def flush() -> None:
        nonlocal start, pending
        if not pending:
            return
        gray = np.stack([rgb_to_gray(c) for c in pending])
        with torch.inference_mode():
            feats = encoder(gray_input(torch.from_numpy(gray).float().div_(255.0)))
        for key, f in zip(FEATURE_FILES, feats[1:]):
            arrays[key][start : start + len(pending)] = f.numpy().astype(np.float16)
        start += len(pending)
        pending = []

    idx = 0
    for k, path in enumerate(track(photos, len(photos), "caching features", enabled=not quiet)):
        if log is not None and k % 500 == 0:
            log(f"caching features: {k}/{len(photos)} photos")
        for crop in crops_of(path):
            lightness[idx], ab[idx] = crop_targets(crop)
            # the crop's palette, from a 64-pixel thumbnail (6x faster k-means than the default 160)
            pal = palette_from_image(cv2.resize(crop, (64, 64), interpolation=cv2.INTER_AREA), k=5, seed=spec.seed)
            palettes[idx] = pal.lab
            text = caption_for(subject_of(path), pal.lab, pal.weights)
            if text not in caption_index:
                caption_index[text] = len(captions)
                captions.append(text)
            caption_of[idx] = caption_index[text]
            pending.append(crop)
            idx += 1
        if len(pending) >= batch_size:
            flush()
    flush()
    for arr in arrays.values():
        arr.flush()
    arrays.clear()
    for key in FEATURE_FILES:
        (out / f"{key}.npy.part").replace(out / f"{key}.npy")
    np.save(out / "lightness.npy", lightness)
    np.save(out / "ab.npy", ab)
    np.save(out / "palette.npy", palettes)
    np.save(out / "caption.npy", caption_of)
    if text_encoder is not None:
        np.save(out / "text.npy", np.asarray(text_encoder.encode(captions), np.float16))
    (out / "captions.json").write_text(json.dumps(captions, indent=0))
    meta = {"count": n, "crop_size": size, "crops_per_photo": per, "train": spec.train, "seed": spec.seed,
            "photos": [p.name for p in photos]}
    meta_path.write_text(json.dumps(meta))
    return out
