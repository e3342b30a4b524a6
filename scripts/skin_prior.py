"""Would a semantic skin prior help automatic mode?  Measured on the held-out sets of ``eval_model.py``.

The regression model colours each held-out image (gain ``--gain``); a skin mask is found in the gray
image by the offline models of the store (the skin channel of ``skin_clothes_hair``, inside the boxes of
both BlazeFace detectors, or inside the person mask of ``selfie_segmentation`` with ``--mask person``);
then each policy changes the predicted ab inside the mask only:

* ``clamp[lo,hi]``: the hue turned into [lo, hi] degrees (a = 0 deg, b = 90 deg), chroma kept;
* ``blend a``: ab moved the share ``a`` of the way to the mean skin chroma of the *training* images
  (per image, the mean ab of the mask; the median over images is the prior): what ``--skin-prior a``
  does (:mod:`chromaflow.guidance.skin`);
* ``clamp+floor c``: the clamp, and chroma raised to at least ``c``.

Prints, per set and policy: PSNR of all images, PSNR of the images with skin (over 100 mask pixels),
the ab RMSE inside the masks (Lab units), the share of mask pixels with chroma over 5 whose hue is
outside [0, 110] degrees (green, blue or magenta skin; the ground truth's share is printed last) and
colourfulness.  Needs ``pip install "chromaflow[grounding]"`` and the models (``CHROMAFLOW_MODEL_DIR``).

Example::

    CHROMAFLOW_MODEL_DIR=../shared/models python scripts/skin_prior.py --frames ../shared/data/frames
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from chromaflow.color.lab import compose_rgb, gray_to_lightness, rgb_to_gray, rgb_to_lab
from chromaflow.colorizers.chroma_model import ChromaModel, ModelOptions
from chromaflow.guidance import detectors as D
from chromaflow.guidance.skin import FaceSkin, pull_towards
from chromaflow.metrics.image import colorfulness, psnr
from chromaflow.models.weights import SHIPPED, load_model
from chromaflow.training.cache import list_photos, read_rgb, split_frames, split_photos
from chromaflow.training.config import DataConfig


def hue_clamp(ab: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``(..., 2)`` Lab ab with its hue angle turned into ``[lo, hi]`` degrees, chroma kept."""
    c = np.hypot(ab[..., 0], ab[..., 1])
    h = np.degrees(np.arctan2(ab[..., 1], ab[..., 0]))
    mid = (lo + hi) / 2.0
    h = mid + np.clip((h - mid + 180.0) % 360.0 - 180.0, lo - mid, hi - mid)
    r = np.radians(h)
    return np.stack([c * np.cos(r), c * np.sin(r)], -1).astype(np.float32)


def policies(prior: np.ndarray):
    yield "base", lambda ab: ab
    for lo, hi in ((20, 95), (30, 90), (0, 110)):
        yield f"clamp[{lo},{hi}]", lambda ab, lo=lo, hi=hi: hue_clamp(ab, lo, hi)
    for a in (0.25, 0.5):
        yield f"blend {a}", lambda ab, a=a: pull_towards(ab, np.ones(ab.shape[:-1], np.float32), prior, a)
    for floor in (8.0, 12.0):
        def raise_(ab, floor=floor):
            cl = hue_clamp(ab, 20, 95)
            c = np.hypot(cl[..., 0], cl[..., 1])[..., None]
            unit = np.where(c > 1e-3, cl / np.maximum(c, 1e-3), prior / np.linalg.norm(prior))
            return np.where(c < floor, unit * floor, cl).astype(np.float32)
        yield f"clamp+floor {floor:g}", raise_


class SkinMask:
    """Soft skin weight ``(H, W)`` in [0, 1] of a gray ``uint8`` image: the product's
    :class:`~chromaflow.guidance.skin.FaceSkin`, or the skin channel inside the person mask."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        if mode == "face":
            self.face = FaceSkin(threads=1)
        else:
            self.parts = D.PartsSegmenter(D.load_model("skin_clothes_hair", 1))
            self.person = D.PersonSegmenter(D.load_model("selfie_segmentation", 1))

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        if self.mode == "face":
            return self.face(gray)
        skin = np.clip((D.to_frame(self.parts(gray)[0], gray.shape) - 0.3) / 0.4, 0.0, 1.0)
        return (skin * np.clip((self.person(gray) - 0.3) / 0.4, 0.0, 1.0)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=SHIPPED["regression"])
    ap.add_argument("--photos", type=Path, default=Path("../shared/data/photos"))
    ap.add_argument("--frames", type=Path, default=Path("../shared/data/frames"))
    ap.add_argument("--gain", type=float, default=1.1)
    ap.add_argument("--mask", choices=("face", "person"), default="face")
    args = ap.parse_args()
    mask_of = SkinMask(args.mask)
    ftrain, fval = split_frames(list_photos(args.frames), DataConfig.frames_val_fraction, 0)
    ptrain, pval = split_photos(list_photos(args.photos), 0.1, 0)

    means = []  # the prior: per training image with skin, the mean ground-truth ab inside the mask
    for f in ftrain[::2] + ptrain[::4]:
        rgb = read_rgb(f)
        m = mask_of(rgb_to_gray(rgb)) > 0.5
        if m.sum() > 50:
            means.append(rgb_to_lab(rgb)[m][:, 1:].mean(0))
    prior = np.median(np.array(means), 0).astype(np.float32)
    print(f"prior: median over {len(means)} training images of their mean skin ab = "
          f"({prior[0]:.1f}, {prior[1]:.1f})")

    net, meta = load_model(args.model)
    model = ChromaModel(net, meta.get("kind", "regression"), ModelOptions(saturation=1.0))
    sets = {"held-out video frames": [fval[i] for i in sorted(set(np.linspace(0, len(fval) - 1, min(120, len(fval))).round().astype(int)))],
            "held-out photos": [pval[i] for i in sorted(set(np.linspace(0, len(pval) - 1, 270).round().astype(int)))]}
    for name, files in sets.items():
        rec = []
        for f in files:
            rgb = read_rgb(f)
            gray = rgb_to_gray(rgb)
            ab = args.gain * model.predict(gray_to_lightness(gray)[None])[0]
            rec.append((gray, ab.astype(np.float32), rgb, rgb_to_lab(rgb)[..., 1:], mask_of(gray)))
        with_skin = [(w > 0.5).sum() > 100 for *_, w in rec]
        print(f"\n{name}: {len(rec)} images, {sum(with_skin)} with skin ({args.mask} mask)\n")
        print("| policy | PSNR all | PSNR with skin | skin ab RMSE | off-hue % | colourfulness |\n|---|---|---|---|---|---|")
        for pname, policy in policies(prior):
            scores, skin_scores, err, count, off, colour = [], [], 0.0, 0, 0, []
            for (gray, ab, rgb, truth, w), has in zip(rec, with_skin):
                ab2 = (ab + w[..., None] * (policy(ab) - ab)).astype(np.float32)
                out = compose_rgb(gray, ab2)
                scores.append(psnr(out, rgb))
                colour.append(colorfulness(out))
                if has:
                    m = w > 0.5
                    skin_scores.append(scores[-1])
                    err += float(((rgb_to_lab(out)[..., 1:] - truth)[m] ** 2).sum())
                    count += int(m.sum())
                    h = np.degrees(np.arctan2(ab2[m][:, 1], ab2[m][:, 0]))
                    off += int(((np.hypot(ab2[m][:, 0], ab2[m][:, 1]) > 5) & ((h < 0) | (h > 110))).sum())
            print(f"| {pname} | {np.mean(scores):.3f} | {np.mean(skin_scores):.3f} | "
                  f"{np.sqrt(err / max(count, 1)):.2f} | {100 * off / max(count, 1):.1f} | {np.mean(colour):.1f} |", flush=True)
        off = count = 0
        for (*_, truth, w), has in zip(rec, with_skin):
            if has:
                t = truth[w > 0.5]
                h = np.degrees(np.arctan2(t[:, 1], t[:, 0]))
                off += int(((np.hypot(t[:, 0], t[:, 1]) > 5) & ((h < 0) | (h > 110))).sum())
                count += len(t)
        print(f"\nground truth off-hue: {100 * off / max(count, 1):.1f} %")


if __name__ == "__main__":
    main()
