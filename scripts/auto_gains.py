"""Automatic mode of a regression model at several chroma gains, on the held-out sets of ``eval_model.py``.

The gain is applied to the predicted ab before composing (the guided upsampling is linear in chroma, so
this equals ``ModelOptions(saturation=gain)``); one prediction per image serves every gain.  Sets: the
270 held-out photos and 48 clip frames of ``scripts/eval_model.py``, with ``--frames`` its held-out
video frames, and with ``--sets tune`` the 135 held-out photos it does not use (where settings are
chosen: ``scripts/auto_tradeoff.py --set tune``).  Prints PSNR and colourfulness per set and gain, and
the PSNR at colourfulness 25 (the model card's target), interpolated between gains.

Example::

    python scripts/auto_gains.py --model chromaflow/data/models/chroma_regression.safetensors \\
        --frames ../shared/data/frames
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from auto_tradeoff import photo_set  # noqa: E402
from eval_model import clip_frames  # noqa: E402

from chromaflow.color.lab import compose_rgb, gray_to_lightness, rgb_to_gray  # noqa: E402
from chromaflow.colorizers.chroma_model import ChromaModel, ModelOptions  # noqa: E402
from chromaflow.metrics.image import colorfulness, psnr  # noqa: E402
from chromaflow.models.weights import load_model  # noqa: E402
from chromaflow.training.cache import list_photos, read_rgb, split_frames, split_photos  # noqa: E402
from chromaflow.training.config import DataConfig  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="regression weights (.safetensors)")
    ap.add_argument("--photos", type=Path, default=Path("../shared/data/photos"))
    ap.add_argument("--clips", type=Path, default=Path("../shared/data/clips"))
    ap.add_argument("--frames", type=Path, default=None)
    ap.add_argument("--gains", default="1.0,1.2,1.3,1.4,1.5,1.6")
    ap.add_argument("--sets", default="photos,clips,frames", help="which of photos, clips, frames, tune to score")
    args = ap.parse_args()
    net, meta = load_model(args.model)
    model = ChromaModel(net, meta.get("kind", "regression"), ModelOptions(saturation=1.0))
    chosen = set(args.sets.split(","))
    sets = {}
    if "photos" in chosen:
        _, val = split_photos(list_photos(args.photos), 0.1, 0)
        picks = np.linspace(0, len(val) - 1, 270).round().astype(int)
        sets["held-out photos"] = [read_rgb(val[i]) for i in sorted(set(picks))]
    if "tune" in chosen:
        sets["tune photos"] = [read_rgb(p) for p in photo_set(args.photos, "tune", 135)]
    if "clips" in chosen:
        sets["clip frames"] = [rgb for _, rgb in clip_frames(args.clips, 4)]
    if args.frames is not None and "frames" in chosen:
        _, fval = split_frames(list_photos(args.frames), DataConfig.frames_val_fraction, 0)
        picks = np.linspace(0, len(fval) - 1, min(120, len(fval))).round().astype(int)
        sets["held-out video frames"] = [read_rgb(fval[i]) for i in sorted(set(picks))]
    print("| set | gain | PSNR | colourfulness |\n|---|---|---|---|")
    for name, items in sets.items():
        preds = []
        for rgb in items:
            gray = rgb_to_gray(rgb)
            preds.append((gray, model.predict(gray_to_lightness(gray)[None])[0], rgb))
        base = float(np.mean([psnr(np.repeat(g[..., None], 3, axis=2), r) for g, _, r in preds]))
        print(f"| {name} ({len(items)}) | gray | {base:.2f} | 0.0 |", flush=True)
        points = []
        for gain in (float(x) for x in args.gains.split(",")):
            outs = [compose_rgb(g, (gain * ab).astype(np.float32)) for g, ab, _ in preds]
            p = float(np.mean([psnr(o, r) for o, (_, _, r) in zip(outs, preds)]))
            c = float(np.mean([colorfulness(o) for o in outs]))
            points.append((c, p))
            print(f"| {name} ({len(items)}) | {gain:g} | {p:.2f} | {c:.1f} |", flush=True)
        cs, ps = zip(*sorted(points))
        if cs[0] <= 25.0 <= cs[-1]:
            print(f"| {name} ({len(items)}) | at colourfulness 25 | {np.interp(25.0, cs, ps):.3f} | 25.0 |", flush=True)


if __name__ == "__main__":
    main()
