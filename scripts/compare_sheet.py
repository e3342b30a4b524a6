"""Contact sheet of automatic colourisation, previous model against new: gray | previous | new | ground truth.

Rows are held-out images: photos of the validation split, frames of the video clips held out of training
(split by clip) and frames of the benchmark clips, spread evenly in each set.  Each model is the default
automatic pipeline (``ChromaModel.load``) on the given weights and options.

Example::

    python scripts/compare_sheet.py \\
        --previous runs/previous/chroma_diffusion.safetensors,runs/previous/chroma_regression.safetensors,saturation=1.5 \\
        --new chromaflow/data/models/chroma_diffusion.safetensors,chromaflow/data/models/chroma_regression.safetensors \\
        -o docs/model/compare.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from chromaflow.color.lab import compose_rgb, gray_to_lightness, rgb_to_gray
from chromaflow.colorizers.chroma_model import ChromaModel, Guidance, ModelOptions
from chromaflow.training.cache import list_photos, read_rgb, split_frames, split_photos
from chromaflow.training.config import DataConfig


def load(spec: str) -> ChromaModel:
    """``DIFFUSION,REGRESSION[,OPTION=VALUE...]`` -> the default pipeline on those weights."""
    parts = spec.split(",")
    opts = {k: float(v) for k, v in (p.split("=", 1) for p in parts[2:])}
    return ChromaModel.load(ModelOptions(weights=parts[0], regression_weights=parts[1], **opts))


def clip_frames(folder: Path, count: int) -> list[tuple[str, np.ndarray]]:
    import av

    clips = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".mp4", ".avi") and "bigbuckbunny" not in p.name)
    out = []
    for path in clips[:count]:
        with av.open(str(path)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        out.append((f"{path.stem}#{len(frames) // 2}", frames[len(frames) // 2]))
    return out


def fit(img: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(width / w, height / h)
    small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    canvas = np.full((height, width, 3), 255, np.uint8)
    y0, x0 = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    canvas[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    return canvas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--previous", required=True, help="DIFFUSION,REGRESSION[,OPTION=VALUE...] of the previous model")
    ap.add_argument("--new", required=True, help="the same for the new model")
    ap.add_argument("--photos", type=Path, default=Path("../shared/data/photos"))
    ap.add_argument("--frames", type=Path, default=Path("../shared/data/frames"))
    ap.add_argument("--clips", type=Path, default=Path("../shared/data/clips"))
    ap.add_argument("--counts", default="12,8,4", help="photos, held-out video frames, clip frames")
    ap.add_argument("--cell", type=int, default=200, help="cell width in pixels")
    ap.add_argument("-o", "--output", type=Path, default=Path("docs/model/compare.jpg"))
    args = ap.parse_args()
    n_photos, n_frames, n_clips = (int(x) for x in args.counts.split(","))
    _, val = split_photos(list_photos(args.photos), 0.1, 0)
    # photos the eval table uses are spread the same way; take every k-th of them
    items = [(p.name, read_rgb(p)) for p in (val[i] for i in np.linspace(0, len(val) - 1, n_photos).round().astype(int))]
    _, fval = split_frames(list_photos(args.frames), DataConfig.frames_val_fraction, 0)
    items += [(p.name, read_rgb(p)) for p in (fval[i] for i in np.linspace(0, len(fval) - 1, n_frames).round().astype(int))]
    items += clip_frames(args.clips, n_clips)
    models = [load(args.previous), load(args.new)]
    w = args.cell
    h = w * 3 // 4
    rows = []
    for name, rgb in items:
        gray = rgb_to_gray(rgb)
        light = gray_to_lightness(gray)[None]
        cells = [np.repeat(gray[..., None], 3, axis=2)]
        cells += [compose_rgb(gray, m.predict(light, Guidance(seed=0))[0]) for m in models]
        cells.append(rgb)
        rows.append(np.concatenate([fit(c, w, h) for c in cells], axis=1))
        print(name, flush=True)
    header = np.full((24, 4 * w, 3), 255, np.uint8)
    for i, text in enumerate(("gray", "previous", "new", "ground truth")):
        cv2.putText(header, text, (i * w + 6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    # two columns of rows so the sheet stays viewable
    half = -(-len(rows) // 2)
    left = np.concatenate([header, *rows[:half]], axis=0)
    right_rows = rows[half:] + [np.full_like(rows[0], 255)] * (half - len(rows[half:]))
    right = np.concatenate([header, *right_rows], axis=0)
    sheet = np.concatenate([left, np.full((left.shape[0], 12, 3), 255, np.uint8), right], axis=1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.output), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {args.output} ({len(rows)} images)")


if __name__ == "__main__":
    main()
