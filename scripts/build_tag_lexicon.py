"""Build the tag lexicon behind ``--palette tags`` (run once by maintainers).

    python scripts/build_tag_lexicon.py ../shared/data/photos

For every training photo (the same 90 % split the model trains on, so the
held-out photos stay unseen) the frozen EfficientNet-Lite0 classifier reads
the *gray* photo, as it will read gray video at run time, and the photo's
colours are credited to its five most probable ImageNet classes, weighted by
probability.  Each class's pooled colours are then summarised by a weighted
k-means into three Lab colours with their shares.  The result maps "what a
gray picture looks like" to "what colours such pictures have": the offline
stand-in for the palette paper's tagger and language model.

Writes ``chromaflow/data/tag_lexicon.json`` (classes by index; classes that
no photo credited with a total probability of at least ``MIN_MASS`` are left
out).  The photos' provenance and licences are in ``../shared/README.md``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from chromaflow.color.lab import rgb_to_lab
from chromaflow.guidance.palette import weighted_kmeans
from chromaflow.models.efficientnet import gray_input, load_efficientnet_lite0
from chromaflow.training.cache import list_photos, read_rgb, split_photos

TOP_K = 5
PIXELS_PER_PHOTO = 256
COLORS_PER_CLASS = 3
MIN_MASS = 0.05


def main(photos: str) -> None:
    train, _ = split_photos(list_photos(photos), val_fraction=0.1, seed=0)
    encoder = load_efficientnet_lite0()
    rng = np.random.default_rng(0)
    pooled: dict[int, list[tuple[np.ndarray, float]]] = {}
    for i, path in enumerate(train):
        rgb = read_rgb(path)
        small = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        with torch.inference_mode():
            prob = torch.softmax(encoder.classify(gray_input(torch.from_numpy(gray)[None])), -1)[0].numpy()
        lab = rgb_to_lab(cv2.resize(rgb, (32, 32), interpolation=cv2.INTER_AREA)).reshape(-1, 3)
        lab = lab[rng.choice(len(lab), PIXELS_PER_PHOTO, replace=False)]
        for c in np.argsort(-prob)[:TOP_K]:
            pooled.setdefault(int(c), []).append((lab, float(prob[c])))
        if (i + 1) % 500 == 0:
            print(f"{i + 1}/{len(train)} photos", flush=True)
    classes = {}
    for c, items in sorted(pooled.items()):
        mass = sum(p for _, p in items)
        if mass < MIN_MASS:
            continue
        x = np.concatenate([lab for lab, _ in items])
        w = np.concatenate([np.full(len(lab), p) for lab, p in items])
        centers, shares = weighted_kmeans(x, w, COLORS_PER_CLASS)
        classes[str(c)] = {
            "colors": np.round(centers, 2).tolist(),
            "shares": np.round(shares, 4).tolist(),
            "mass": round(mass, 4),
        }
    out = {
        "space": "CIE Lab (D65), L in [0, 100], ab in about [-128, 127]",
        "source": f"{len(train)} training photos of ../shared/data/photos (90 % split, seed 0), "
        f"gray EfficientNet-Lite0 top-{TOP_K} classes, {PIXELS_PER_PHOTO} pixels each",
        "classes": classes,
    }
    target = Path(__file__).resolve().parents[1] / "chromaflow" / "data" / "tag_lexicon.json"
    target.write_text(json.dumps(out, separators=(",", ":")))
    print(f"wrote {target}: {len(classes)} classes from {len(train)} photos")


if __name__ == "__main__":
    main(sys.argv[1])
