"""Automatic colourisation: the PSNR / colourfulness trade-off of inference-time choices.

The issue's target for automatic colourisation of held-out photos is
colourfulness >= 25 with PSNR >= gray + 1 dB.  This script measures, on
held-out photos, what can be had from the trained networks without training
again: a chroma gain on the regression baseline, the shipped blend, the mean
of several diffusion samples, a gain where diffusion samples agree, a gain
that grows with the predicted chroma, and test-time augmentation (flip and
scales).  Every row is a point (PSNR, colourfulness); the target is met by a
row only if both are reached.

``--set tune`` uses the held-out photos that ``scripts/eval_model.py`` does
not (choose settings there), ``--set eval`` the ones it does.  ``--frames``
adds held-out video frames (the clips held out of training).

For a regression network with a chroma-bin head (the second-generation
model) the rows also include its annealed-mean read-out at several
temperatures ``T`` and rebalancing powers ``beta``, alone and blended with
the diffusion sample.

Example::

    python scripts/auto_tradeoff.py --photos ../shared/data/photos --set tune --max-photos 135
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from chromaflow.color.lab import compose_rgb, gray_to_lightness, rgb_to_gray
from chromaflow.colorizers.chroma_model import ChromaModel, Guidance, ModelOptions
from chromaflow.metrics.image import colorfulness, psnr
from chromaflow.models.weights import SHIPPED, load_model
from chromaflow.training.cache import list_photos, read_rgb, split_photos

EVAL_PHOTOS = 270  # scripts/eval_model.py --max-photos 270


def photo_set(folder: Path, which: str, count: int) -> list[Path]:
    _, val = split_photos(list_photos(folder), 0.1, 0)
    evaluated = set(np.linspace(0, len(val) - 1, EVAL_PHOTOS).round().astype(int).tolist())
    idx = sorted(evaluated) if which == "eval" else [i for i in range(len(val)) if i not in evaluated]
    picks = np.linspace(0, len(idx) - 1, min(count, len(idx))).round().astype(int)
    return [val[idx[i]] for i in picks]


#: (temperature, prior power) of the bin read-outs scored
READOUTS = [(t, b) for t in (0.3, 0.38, 0.5, 0.7, 1.0) for b in (0.0, 0.25, 0.5)]


def predictions(paths: list[Path], seeds: int, diffusion: Path, regression: Path) -> list[dict]:
    raw = ModelOptions(saturation=1.0, blend=0.0, bin_readout=False)  # "reg": the regression head's output
    dnet, _ = load_model(diffusion)
    rnet, _ = load_model(regression)
    dif = ChromaModel(dnet, "diffusion", raw)
    reg = ChromaModel(rnet, "regression", raw, encoder=dif.encoder)
    scales = {s: reg.with_options(ModelOptions(saturation=1.0, blend=0.0, bin_readout=False, model_side=s,
                                               max_side=2 * s))
              for s in (224, 288)}
    out = []
    for k, path in enumerate(paths):
        rgb = read_rgb(path) if isinstance(path, Path) else path
        gray = rgb_to_gray(rgb)
        light = gray_to_lightness(gray)[None]
        flipped = np.ascontiguousarray(light[:, :, ::-1])
        item = {"rgb": rgb, "gray": gray, "reg": reg.predict(light)[0],
                "reg_flip": reg.predict(flipped)[0][:, ::-1],
                "dif": np.stack([dif.predict(light, Guidance(seed=s))[0] for s in range(seeds)])}
        item["reg_scales"] = [m.predict(light)[0] for m in scales.values()]
        if rnet.config.bins:
            for t, b in READOUTS:
                item[("bins", t, b)] = reg.with_options(
                    ModelOptions(saturation=1.0, blend=0.0, bin_temperature=t, bin_prior_power=b)).predict(light)[0]
        out.append(item)
        if (k + 1) % 20 == 0:
            print(f"  {k + 1}/{len(paths)}", flush=True)
    return out


def agreement_gain(d: dict, k: float, spread: float) -> np.ndarray:
    """Blend of regression and diffusion mean, boosted by ``k`` where the samples agree."""
    mean = d["dif"].mean(0)
    sd = np.sqrt(((d["dif"] - mean) ** 2).sum(-1).mean(0))
    w = np.exp(-((sd / spread) ** 2))[..., None]
    return (0.5 * d["reg"] + 0.5 * mean) * (1 + k * w)


def chroma_gain(ab: np.ndarray, k: float, c0: float) -> np.ndarray:
    """Gain ``1 + k (c / (c + c0))^2`` growing with the predicted chroma ``c``."""
    c = np.linalg.norm(ab, axis=-1, keepdims=True)
    return ab * (1 + k * (c / (c + c0)) ** 2)


CANDIDATES = {
    "regression": lambda d: d["reg"],
    **{f"regression x{g}": (lambda d, g=g: g * d["reg"]) for g in (1.3, 1.4, 1.5, 1.6)},
    "shipped: (regression + diffusion) / 2 x1.5": lambda d: 0.75 * (d["reg"] + d["dif"][0]),
    **{f"diffusion mean of samples x{g}": (lambda d, g=g: g * d["dif"].mean(0)) for g in (1.0, 1.5)},
    **{f"(regression + diffusion mean) / 2, x(1 + {k} agreement)": (lambda d, k=k: agreement_gain(d, k, 10.0))
       for k in (0.5, 1.0)},
    **{f"regression, gain {k} growing with chroma": (lambda d, k=k: chroma_gain(d["reg"], k, 5.0))
       for k in (0.8, 1.2)},
    **{f"regression + flip x{g}": (lambda d, g=g: g * 0.5 * (d["reg"] + d["reg_flip"])) for g in (1.4, 1.5)},
    **{f"regression, 3 scales + flip x{g}": (
        lambda d, g=g: g * np.mean([d["reg"], d["reg_flip"], *d["reg_scales"]], 0)) for g in (1.4, 1.5)},
}


def bin_candidates(data: list[dict]) -> dict:
    """Rows for the bin read-outs present in ``data``."""
    keys = [k for k in data[0] if isinstance(k, tuple)]
    rows = {}
    for _, t, b in keys:
        rows[f"bins T={t} beta={b}"] = lambda d, k=("bins", t, b): d[k]
        for w in (0.5, 0.75):
            rows[f"bins T={t} beta={b}, {w:g} + diffusion {1 - w:g}"] = (
                lambda d, k=("bins", t, b), w=w: w * d[k] + (1 - w) * d["dif"][0])
    for g in (1.2, 1.4):
        for t, b in ((0.38, 0.0), (0.5, 0.0), (0.5, 0.25)):
            if ("bins", t, b) in keys:
                rows[f"bins T={t} beta={b} x{g}"] = lambda d, k=("bins", t, b), g=g: g * d[k]
    return rows


def frame_set(folder: Path, count: int) -> list[np.ndarray]:
    from chromaflow.training.cache import split_frames
    from chromaflow.training.config import DataConfig

    _, val = split_frames(list_photos(folder), DataConfig.frames_val_fraction, 0)
    picks = np.linspace(0, len(val) - 1, min(count, len(val))).round().astype(int)
    return [read_rgb(val[i]) for i in sorted(set(picks))]


def score(data: list[dict], label: str) -> None:
    gray = np.mean([psnr(np.repeat(d["gray"][..., None], 3, axis=2), d["rgb"]) for d in data])
    print(f"\n{len(data)} {label}; gray {gray:.2f} dB; target: PSNR >= {gray + 1:.2f} with colourfulness >= 25\n")
    print("| prediction | PSNR | colourfulness | target |\n|---|---|---|---|")
    for name, fn in {**CANDIDATES, **bin_candidates(data)}.items():
        preds = [compose_rgb(d["gray"], fn(d).astype(np.float32)) for d in data]
        p = float(np.mean([psnr(x, d["rgb"]) for x, d in zip(preds, data)]))
        c = float(np.mean([colorfulness(x) for x in preds]))
        print(f"| {name} | {p:.2f} | {c:.1f} | {'met' if p >= gray + 1 and c >= 25 else '-'} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=Path("../shared/data/photos"))
    ap.add_argument("--set", choices=("tune", "eval"), default="tune")
    ap.add_argument("--max-photos", type=int, default=135)
    ap.add_argument("--seeds", type=int, default=4, help="diffusion samples per photo")
    ap.add_argument("--diffusion", type=Path, default=SHIPPED["diffusion"], help="diffusion weights")
    ap.add_argument("--regression", type=Path, default=SHIPPED["regression"], help="regression weights")
    ap.add_argument("--frames", type=Path, default=None, help="video frames folder: score its held-out clips too")
    ap.add_argument("--max-frames", type=int, default=60)
    args = ap.parse_args()
    data = predictions(photo_set(args.photos, args.set, args.max_photos), args.seeds, args.diffusion, args.regression)
    score(data, f"held-out photos ({args.set} set)")
    if args.frames is not None:
        frames = predictions(frame_set(args.frames, args.max_frames), args.seeds, args.diffusion, args.regression)
        score(frames, "held-out video frames")


if __name__ == "__main__":
    main()
