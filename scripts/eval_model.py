"""Measure the embedded colorization model(s) on held-out photos and clip frames.

Gray in, original as ground truth.  For each model (each network alone, and
with ``--shipped`` the shipped default: the diffusion sample blended with the
regression baseline, with the saturation gain) and each condition:
(a) automatic, (b) the ground truth's 5-colour palette, (c) 1 % random
ground-truth pixels as hints, (d) a caption naming the true colours, and
``tags``: the palette of the gray image's content tags (``--palette tags``,
no ground truth used); plus the gray baseline (output = input).  Metrics: PSNR, SSIM, colourfulness, and
LPIPS-Alex with ``--lpips``.  Writes a Markdown table and a JSON file.

Example::

    python scripts/eval_model.py --photos ../shared/data/photos --clips ../shared/data/clips \\
        --model diffusion=chromaflow/data/models/chroma_diffusion.safetensors \\
        --model regression=chromaflow/data/models/chroma_regression.safetensors \\
        --out docs/model/eval --lpips
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import av
import numpy as np

from chromaflow.color.lab import compose_rgb, gray_to_lightness, rgb_to_gray, rgb_to_lab
from chromaflow.colorizers.chroma_model import ChromaModel, Guidance, ModelOptions
from chromaflow.guidance.palette import palette_from_image
from chromaflow.guidance.tags import tag_palette
from chromaflow.metrics.image import colorfulness, psnr, ssim
from chromaflow.models.text import shared_text_encoder
from chromaflow.models.weights import load_model
from chromaflow.samplers.ddim import SamplerOptions
from chromaflow.training.cache import caption_for, list_photos, read_rgb, split_frames, split_photos, subject_of
from chromaflow.training.config import DataConfig

CONDITIONS = ("auto", "palette", "hints", "caption", "tags")
NATURAL_CLIPS_EXCLUDE = ("bigbuckbunny",)


def clip_frames(folder: Path, per_clip: int) -> list[tuple[str, np.ndarray]]:
    """``per_clip`` frames evenly spread inside each natural clip (ends excluded)."""
    out = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".mp4", ".avi") or any(x in path.name for x in NATURAL_CLIPS_EXCLUDE):
            continue
        with av.open(str(path)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        picks = np.linspace(0, len(frames) - 1, per_clip + 2)[1:-1].round().astype(int)
        out += [(f"{path.stem}#{i}", frames[i]) for i in picks]
    return out


def hint_map(rgb: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    lab = rgb_to_lab(rgb)
    rng = np.random.default_rng(seed)
    conf = (rng.random(rgb.shape[:2]) < share).astype(np.float32)
    return lab[..., 1:] * conf[..., None], conf


def evaluate(items, models, args, lpips) -> dict:
    text = shared_text_encoder()
    encoder = next(iter(models.values())).encoder
    rows: dict[tuple[str, str], list[dict]] = defaultdict(list)
    times: dict[str, list[float]] = defaultdict(list)
    for k, (name, rgb) in enumerate(items):
        gray = rgb_to_gray(rgb)
        light = gray_to_lightness(gray)[None]
        pal = palette_from_image(rgb, k=5, seed=0)
        subject = subject_of(Path(name)) if "#" not in name else "scene"  # clip frames: "dog.mp4#12"
        caption = caption_for(subject, pal.lab, pal.weights)
        emb = text.encode([caption])[0]
        hint_ab, hint_conf = hint_map(rgb, 0.01, seed=k)
        tags = tag_palette([gray], seed=args.seed, encoder=encoder).palette if "tags" in args.conditions else None
        out = {"gray": np.repeat(gray[..., None], 3, axis=2)}
        for mname, model in models.items():
            for cond in args.conditions:
                g = Guidance(seed=args.seed)
                kw = {}
                if cond == "palette":
                    g = Guidance(palette_lab=pal.lab, seed=args.seed)
                elif cond == "tags":
                    g = Guidance(palette_lab=tags.lab, seed=args.seed)
                elif cond == "caption":
                    g = Guidance(text=emb, seed=args.seed)
                elif cond == "hints":
                    kw = {"hint_ab": hint_ab[None], "hint_conf": hint_conf[None]}
                t0 = time.perf_counter()
                ab = model.predict(light, g, **kw)[0]
                times[mname].append(time.perf_counter() - t0)
                out[f"{mname}/{cond}"] = compose_rgb(gray, ab)
        for key, pred in out.items():
            m = {"psnr": psnr(pred, rgb), "ssim": ssim(pred, rgb), "colorfulness": colorfulness(pred)}
            if lpips is not None:
                m["lpips"] = lpips.distance(pred, rgb)
            rows[key].append(m)
        if (k + 1) % 20 == 0:
            print(f"  {k + 1}/{len(items)}", flush=True)
    table = {key: {m: float(np.mean([r[m] for r in v])) for m in v[0]} for key, v in rows.items()}
    for mname, ts in times.items():
        table.setdefault("_seconds_per_call", {})[mname] = float(np.mean(ts))
    return table


def markdown(results: dict, counts: dict) -> str:
    lines = []
    for set_name, table in results.items():
        lines.append(f"### {set_name} ({counts[set_name]} images)\n")
        metrics = [m for m in ("psnr", "ssim", "colorfulness", "lpips") if m in table["gray"]]
        lines.append("| method | " + " | ".join(metrics) + " |")
        lines.append("|---" * (len(metrics) + 1) + "|")
        for key, vals in table.items():
            if key.startswith("_"):
                continue
            lines.append(f"| {key} | " + " | ".join(f"{vals[m]:.4f}" if m in ("ssim", "lpips") else f"{vals[m]:.2f}"
                                                   for m in metrics) + " |")
        lines.append("")
        lines.append("Mean seconds per model call: " + ", ".join(
            f"{k} {v:.3f}" for k, v in table.get("_seconds_per_call", {}).items()) + "\n")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=Path("../shared/data/photos"))
    ap.add_argument("--clips", type=Path, default=Path("../shared/data/clips"))
    ap.add_argument("--model", action="append", help="NAME=PATH of a .safetensors file, run alone with no gain")
    ap.add_argument("--shipped", action="store_true",
                    help="also the shipped default: diffusion sample blended with the regression, with the gain")
    ap.add_argument("--default", action="append", metavar="NAME=DIFFUSION,REGRESSION[,OPTION=VALUE...]",
                    help="the default pipeline (blend, gain, bin read-out) on other weights, e.g. the previous "
                         "release's; OPTION is a field of ModelOptions (saturation, blend, bin_temperature, ...)")
    ap.add_argument("--frames", type=Path, default=None,
                    help="folder of video frames (../shared/data/frames): its held-out clips (split by clip, as in "
                         "training) are a third set")
    ap.add_argument("--max-frames", type=int, default=120, help="held-out video frames to use (evenly spaced)")
    ap.add_argument("--max-photos", type=int, default=540, help="held-out photos to use (evenly spaced)")
    ap.add_argument("--frames-per-clip", type=int, default=4)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lpips", action="store_true")
    ap.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated subset of " + ", ".join(CONDITIONS))
    ap.add_argument("--out", type=Path, required=True, help="output prefix (.md and .json are added)")
    args = ap.parse_args()
    args.conditions = [c for c in args.conditions.split(",") if c]
    if not set(args.conditions) <= set(CONDITIONS):
        ap.error(f"unknown condition in {args.conditions}")

    sampler = SamplerOptions(steps=args.steps, temperature=args.temperature)
    raw = ModelOptions(sampler=sampler, saturation=1.0, blend=0.0)  # each network alone, no gain
    models = {}
    for spec in args.model or []:
        name, path = spec.split("=", 1)
        net, meta = load_model(path)
        models[name] = ChromaModel(net, meta.get("kind", "diffusion"), raw)
    if args.shipped:
        models["chromaflow"] = ChromaModel.load(ModelOptions(sampler=sampler))
    for spec in args.default or []:
        name, rest = spec.split("=", 1)
        parts = rest.split(",")
        opts = {k: float(v) for k, v in (p.split("=", 1) for p in parts[2:])}
        models[name] = ChromaModel.load(ModelOptions(sampler=sampler, weights=parts[0], regression_weights=parts[1],
                                                     **opts))
    lpips = None
    if args.lpips:
        from chromaflow.metrics.lpips import load_lpips_alex

        lpips = load_lpips_alex()
    _, val = split_photos(list_photos(args.photos), 0.1, 0)
    picks = np.linspace(0, len(val) - 1, min(args.max_photos, len(val))).round().astype(int)
    photos = [(val[i].name, read_rgb(val[i])) for i in sorted(set(picks))] if args.max_photos > 0 else []
    frames = clip_frames(args.clips, args.frames_per_clip)
    sets = [("held-out photos", photos), ("clip frames", frames)]
    if args.frames is not None:
        _, fval = split_frames(list_photos(args.frames), DataConfig.frames_val_fraction, 0)
        picks = np.linspace(0, len(fval) - 1, min(args.max_frames, len(fval))).round().astype(int)
        sets.append(("held-out video frames", [(fval[i].name, read_rgb(fval[i])) for i in sorted(set(picks))]))
    results, counts = {}, {}
    for set_name, items in [(n, i) for n, i in sets if i]:  # --max-photos 0 or an empty --clips folder: not scored
        print(f"{set_name}: {len(items)} images", flush=True)
        results[set_name] = evaluate(items, models, args, lpips)
        counts[set_name] = len(items)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"steps": args.steps, "temperature": args.temperature, "seed": args.seed, "conditions": args.conditions}
    Path(f"{args.out}.json").write_text(json.dumps({"settings": settings, "counts": counts, "results": results},
                                                   indent=1))
    md = markdown(results, counts)
    Path(f"{args.out}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
