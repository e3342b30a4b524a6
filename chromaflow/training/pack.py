"""A training pack: the training images themselves, small, for a machine the feature cache cannot reach.

The feature cache (:mod:`chromaflow.training.cache`) is gigabytes and fixes the crops once; a lent GPU
machine receives at most 64 MiB and can run the frozen encoder on every step.  A pack holds the
images re-encoded at a reduced size (WebP or JPEG) with what the cache derives from them, so
training there cuts fresh random crops on every step and encodes them on the GPU
(:class:`PackedCrops`).  The split is the cache's (:func:`~chromaflow.training.cache.split_photos`,
:func:`~chromaflow.training.cache.split_frames`, same settings, same held-out images), so a
model trained from a pack is validated here on the cache's validation crops like any other.

A pack is a folder, written under a temporary name and renamed when complete:

================== ================= =====================================================
file               shape / type      content
================== ================= =====================================================
images.bin         bytes             the encoded images, one after the other
index.json         JSON              spec, split settings, and per image: name, set
                                     (``photos`` / ``frames``), split (``train`` / ``val``),
                                     byte offset and size, caption index; the captions
palette.npy        (N, 5, 3) float32 k-means palette of each whole image, Lab
text.npy           (M, 384) float16  sentence embedding of each caption
encoder.safetensors                  the frozen EfficientNet-Lite0 (float16), so the GPU
                                     machine needs only the architecture's package
================== ================= =====================================================

Unlike the cache, the palette and caption are the whole image's, not each crop's (k-means per
crop on every step would cost more than the training step).
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from chromaflow.color.lab import rgb_to_gray
from chromaflow.errors import InputError
from chromaflow.guidance.palette import palette_from_image
from chromaflow.models.efficientnet import feature_state, gray_input, load_efficientnet_lite0
from chromaflow.progress import track
from chromaflow.training.cache import (
    _centre_crop,
    _random_crop,
    at_least,
    caption_for,
    crop_targets,
    list_photos,
    read_rgb,
    split_frames,
    split_photos,
    subject_of,
)
from chromaflow.training.config import DataConfig

PACK_VERSION = 1
FORMATS = {"webp": (".webp", cv2.IMWRITE_WEBP_QUALITY), "jpg": (".jpg", cv2.IMWRITE_JPEG_QUALITY)}


@dataclass(frozen=True)
class PackSpec:
    """How the images are stored.

    Attributes:
        short_side: images larger than this are area-resized to this short side (px).
        image_format: ``"webp"`` or ``"jpg"`` (both 4:2:0; measured on 300 of the photos and frames at a
            short side of 160, quality 80: WebP 6.2 KB per image, JPEG 8.2 KB, with an ab error of 1.3 and
            1.2 Lab units RMS on the 1/4 grid the network learns).
        quality: encoder quality, 1-100 (the defaults put the 6,783 training images of
            ``configs/regression_gpu.toml`` in 28.7 MiB, the whole pack in 37.2 MiB).
        include_val: store the validation images too (validation on the GPU machine); without them the
            pack is about 10 % smaller and the run is validated here afterwards.
    """

    short_side: int = 144
    image_format: str = "webp"
    quality: int = 75
    include_val: bool = False

    def __post_init__(self) -> None:
        if self.image_format not in FORMATS:
            raise InputError(f"pack image format must be one of {', '.join(FORMATS)}, not {self.image_format!r}")
        if not 1 <= self.quality <= 100 or self.short_side < 32:
            raise InputError("pack quality must be in 1..100 and the short side at least 32 px")


def _shrink(rgb: np.ndarray, short_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = short_side / min(h, w)
    if s >= 1:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def build_pack(
    data: DataConfig,
    out_dir: str | Path,
    spec: PackSpec = PackSpec(),
    text_encoder=None,
    encoder_weights: bool = True,
    quiet: bool = False,
) -> Path:
    """Write the pack of ``data``'s photos (and frames) to ``out_dir``.

    Args:
        data: the data settings of a training config (photos, frames, split).
        out_dir: the pack folder (must not exist; written as ``<out_dir>.part`` and renamed).
        spec: image size and format.
        text_encoder: an object with ``encode(list[str]) -> (M, 384)`` (default: the shipped
            all-MiniLM-L6-v2).
        encoder_weights: store the ImageNet EfficientNet-Lite0 feature weights in the pack (float16).
        quiet: no progress bar.

    Returns:
        ``out_dir``.
    """
    out = Path(out_dir)
    if out.exists():
        raise InputError(f"{out} already exists; remove it or pick another folder")
    if text_encoder is None:
        from chromaflow.models.text import shared_text_encoder

        text_encoder = shared_text_encoder()
    items: list[tuple[Path, str, str]] = []
    train, val = split_photos(list_photos(data.photos), data.val_fraction, data.split_seed)
    items += [(p, "photos", "train") for p in train] + [(p, "photos", "val") for p in val]
    if data.frames:
        f_train, f_val = split_frames(list_photos(data.frames), data.frames_val_fraction, data.split_seed)
        items += [(p, "frames", "train") for p in f_train] + [(p, "frames", "val") for p in f_val]
    if not spec.include_val:
        items = [it for it in items if it[2] == "train"]
    ext, flag = FORMATS[spec.image_format]
    tmp = out.with_name(out.name + ".part")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    entries, captions, caption_index, palettes = [], [], {}, []
    offset = 0
    with open(tmp / "images.bin", "wb") as blob:
        for path, subset, split in track(items, len(items), "packing images", enabled=not quiet):
            rgb = _shrink(read_rgb(path), spec.short_side)
            ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [flag, spec.quality])
            if not ok:
                raise InputError(f"cannot encode {path} as {spec.image_format}")
            blob.write(buf.tobytes())
            pal = palette_from_image(cv2.resize(rgb, (64, 64), interpolation=cv2.INTER_AREA), k=5,
                                     seed=data.split_seed)
            text = caption_for(subject_of(path), pal.lab, pal.weights)
            if text not in caption_index:
                caption_index[text] = len(captions)
                captions.append(text)
            palettes.append(pal.lab.astype(np.float32))
            entries.append({"name": path.name, "set": subset, "split": split, "offset": offset, "size": len(buf),
                            "caption": caption_index[text]})
            offset += len(buf)
    np.save(tmp / "palette.npy", np.stack(palettes) if palettes else np.zeros((0, 5, 3), np.float32))
    np.save(tmp / "text.npy", np.asarray(text_encoder.encode(captions), np.float16).reshape(len(captions), -1))
    if encoder_weights:
        from safetensors.torch import save_file

        save_file(feature_state(load_efficientnet_lite0(pretrained=True)), str(tmp / "encoder.safetensors"))
    index = {"version": PACK_VERSION, "spec": asdict(spec),
             "split": {"val_fraction": data.val_fraction, "frames_val_fraction": data.frames_val_fraction,
                       "split_seed": data.split_seed},
             "images": entries, "captions": captions}
    (tmp / "index.json").write_text(json.dumps(index))
    tmp.replace(out)
    return out


def pack_size(folder: str | Path) -> int:
    """Bytes of all files under ``folder``."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


class Pack:
    """A pack read back: every image decoded once into memory (``uint8`` RGB)."""

    def __init__(self, folder: str | Path, workers: int = 4) -> None:
        folder = Path(folder)
        index_path = folder / "index.json"
        if not index_path.is_file():
            raise InputError(f"not a training pack (no index.json): {folder}")
        index = json.loads(index_path.read_text())
        if index.get("version") != PACK_VERSION:
            raise InputError(f"training pack {folder} has version {index.get('version')}, expected {PACK_VERSION}")
        self.folder = folder
        self.entries = index["images"]
        self.split = index["split"]
        self.palette = np.load(folder / "palette.npy")
        self.text = np.load(folder / "text.npy")
        blob = (folder / "images.bin").read_bytes()

        def decode(e: dict) -> np.ndarray:
            buf = np.frombuffer(blob, np.uint8, count=e["size"], offset=e["offset"])
            bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            if bgr is None:
                raise InputError(f"training pack {folder}: cannot decode {e['name']}")
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

        with ThreadPoolExecutor(max(1, workers)) as pool:
            self.images = list(pool.map(decode, self.entries))

    def select(self, subset: str, split: str) -> np.ndarray:
        """Indices of the images of ``subset`` (``photos`` / ``frames``) and ``split`` (``train`` / ``val``)."""
        return np.array([i for i, e in enumerate(self.entries) if e["set"] == subset and e["split"] == split],
                        np.int64)

    @property
    def encoder_weights(self) -> Path | None:
        path = self.folder / "encoder.safetensors"
        return path if path.is_file() else None


class PackedCrops:
    """Crops cut from a pack's images on every draw and encoded by the frozen encoder.

    The same interface as :class:`~chromaflow.training.train.CachedCrops` (``count``, ``batch``,
    ``chroma``), so :class:`~chromaflow.training.train.MixedCrops` mixes either.  Training crops are
    random (area 35-100 %, aspect 3/4-4/3, flips; drawn from the ``rng`` of the step, so runs are
    reproducible); validation crops are the centre crop.

    Args:
        pack: the decoded pack.
        indices: the pack images this source draws from (:meth:`Pack.select`).
        crop_size: crop side (multiple of 32).
        encoder: the frozen :class:`~chromaflow.models.efficientnet.EfficientNetLite0Features`, on
            ``device``.
        device: where the encoder runs and the features are returned.
        train: random crops (True) or centre crops (False).
        pool: threads that cut and convert crops (``None``: in the caller's thread).
    """

    def __init__(self, pack: Pack, indices: np.ndarray, crop_size: int, encoder, device: torch.device,
                 train: bool, pool: ThreadPoolExecutor | None = None) -> None:
        if crop_size % 32:
            raise InputError("data.crop_size must be a multiple of 32")
        if len(indices) == 0:
            raise InputError(f"training pack {pack.folder} has no images for this part of the split")
        self.pack, self.indices, self.crop_size = pack, indices, crop_size
        self.encoder, self.device, self.train, self.pool = encoder, device, train, pool
        self.count = len(indices)

    def _cut(self, k: int, seed: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rgb = self.pack.images[int(self.indices[k])]
        if seed is None:
            crop = _centre_crop(rgb, self.crop_size)
        else:
            crop = _random_crop(at_least(rgb, self.crop_size), self.crop_size, np.random.default_rng(seed))
        lightness, ab = crop_targets(crop)
        return rgb_to_gray(crop), lightness, ab

    def _cuts(self, idx: np.ndarray, rng: np.random.Generator | None):
        # one seed per crop, drawn in order from the step's generator: the same crops with or without threads
        seeds = [None] * len(idx) if rng is None or not self.train else rng.integers(0, 2**63, size=len(idx)).tolist()
        args = list(zip(idx.tolist(), seeds))
        if self.pool is None:
            return [self._cut(k, s) for k, s in args]
        return list(self.pool.map(lambda a: self._cut(*a), args))

    def chroma(self, idx: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        """``(B, 2, s/4, s/4)`` ground-truth chroma of crops (no encoder; for the bin prior)."""
        return torch.from_numpy(np.stack([c[2] for c in self._cuts(idx, rng)])).float()

    def batch(self, idx: np.ndarray, rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        """A batch like :meth:`CachedCrops.batch`: ``feats`` on the encoder's device, the rest on the CPU."""
        cuts = self._cuts(idx, rng)
        gray = torch.from_numpy(np.stack([c[0] for c in cuts])).to(self.device).float().div_(255.0)
        with torch.no_grad():  # not inference_mode: the maps enter the autograd graph of the training step
            feats = tuple(f.float() for f in self.encoder(gray_input(gray))[1:])
        images = self.indices[idx]
        captions = np.array([self.pack.entries[int(i)]["caption"] for i in images], np.int64)
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float()  # noqa: E731
        return {
            "feats": feats,
            "lightness": t(np.stack([c[1] for c in cuts]))[:, None],
            "ab": t(np.stack([c[2] for c in cuts])),
            "palette": t(self.pack.palette[images]),
            "text": t(self.pack.text[captions]),
        }


def packed_sources(folder: str | Path, data: DataConfig, device: torch.device, log=None):
    """The training and validation sources of a pack: ``(train sources, shares, {name: validation source})``.

    The pack's split settings must be those of ``data`` (the held-out images are the cache's).
    """
    pack = Pack(folder, workers=data.workers)
    expected = {"val_fraction": data.val_fraction, "frames_val_fraction": data.frames_val_fraction,
                "split_seed": data.split_seed}
    if pack.split != expected:
        raise InputError(f"training pack {folder} was split with {pack.split}, the config asks for {expected}")
    encoder = load_efficientnet_lite0(pretrained=True, weights=pack.encoder_weights).to(device)
    pool = ThreadPoolExecutor(data.workers) if data.workers > 1 else None
    make = lambda ix, train: PackedCrops(pack, ix, data.crop_size, encoder, device, train, pool)  # noqa: E731
    sources, shares = [make(pack.select("photos", "train"), True)], [1.0]
    frames = pack.select("frames", "train")
    if len(frames):
        sources.append(make(frames, True))
        shares = [1.0 - data.frames_share, data.frames_share]
    vals = {}
    for name in ("photos", "frames"):
        ix = pack.select(name, "val")
        if len(ix):
            vals[name] = make(ix, False)
    if log is not None:
        log(f"training pack {folder}: {len(pack.entries)} images, {pack_size(folder) / 2**20:.1f} MiB, "
            f"encoder on {device}, {max(1, data.workers)} crop worker(s)")
    return sources, shares, vals
