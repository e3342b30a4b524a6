"""Contact sheet of the embedded model on one frame: seeds, palettes, prompts.

Example::

    python scripts/model_sheet.py ../shared/data/clips/dog.mp4 --frame 120 -o docs/model/samples.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import cv2
import numpy as np

from chromaflow.color.lab import compose_rgb, gray_to_lightness, rgb_to_gray
from chromaflow.colorizers.chroma_model import ChromaModel, Guidance, ModelOptions
from chromaflow.guidance.palette import palette_swatch, parse_hex_list
from chromaflow.models.text import shared_text_encoder

PALETTES = ("#c0392b,#f1c40f,#27ae60,#2c3e50,#ecf0f1", "#1f4e79,#5dade2,#d6eaf8,#7d6608,#f5cba7",
            "#6e2c00,#ca6f1e,#f8c471,#145a32,#fdfefe")
PROMPTS = ("a photo in warm autumn colours, orange and brown", "a cold blue scene",
           "green grass and a red sweater")


def read_frame(path: Path, index: int) -> np.ndarray:
    if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == index:
                return f.to_ndarray(format="rgb24")
    raise SystemExit(f"{path} has no frame {index}")


def label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(out, text[:48], (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", type=Path)
    ap.add_argument("--frame", type=int, default=0)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("-o", "--output", type=Path, default=Path("docs/model/samples.jpg"))
    args = ap.parse_args()

    rgb = read_frame(args.input, args.frame)
    h = round(rgb.shape[0] * args.width / rgb.shape[1])
    rgb = cv2.resize(rgb, (args.width, h), interpolation=cv2.INTER_AREA)
    gray = rgb_to_gray(rgb)
    light = gray_to_lightness(gray)[None]
    model = ChromaModel.load(ModelOptions())
    text = shared_text_encoder()

    def run(g: Guidance) -> np.ndarray:
        return compose_rgb(gray, model.predict(light, g)[0])

    rows = [[label(np.repeat(gray[..., None], 3, 2), "input (gray)"), label(rgb, "ground truth")]
            + [label(run(Guidance(seed=s)), f"automatic, seed {s}") for s in (0, 1)]]
    pal_row = []
    for spec in PALETTES:
        pal = parse_hex_list(spec)
        out = run(Guidance(palette_lab=pal.lab, seed=0))
        sw = cv2.resize(palette_swatch(pal, size=40)[:40], (args.width, 14), interpolation=cv2.INTER_NEAREST)
        out[-14:] = sw
        pal_row.append(label(out, "palette (strip at the bottom)"))
    pal_row.append(label(run(Guidance(seed=2)), "automatic, seed 2"))
    rows.append(pal_row)
    rows.append([label(run(Guidance(text=text.encode([p])[0], seed=0)), p) for p in PROMPTS]
                + [label(run(Guidance(seed=3)), "automatic, seed 3")])
    sheet = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.output), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {args.output} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()
