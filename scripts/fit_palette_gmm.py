"""Fit the Gaussian mixture behind ``--palette auto`` (run once by maintainers).

    pip install -e ".[dev]"
    python scripts/fit_palette_gmm.py ../shared/data/photos

Collects saturated colours (Lab chroma above 20) from the training photos,
fits a 12-component full-covariance Gaussian mixture in Lab with
scikit-learn, and writes ``chromaflow/data/palette_gmm.json`` (weights, means,
covariances).  Only numpy is needed to sample from it at run time.  The
photos' provenance and licences are in ``../shared/README.md``: ImageNet
samples, BSDS500 and Kaggle pets, non-commercial research and education.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
from sklearn.mixture import GaussianMixture

from chromaflow.color.lab import rgb_to_lab

COMPONENTS = 12
PIXELS_PER_PHOTO = 200
MIN_CHROMA = 20.0


def main(photos: str) -> None:
    rng = np.random.default_rng(0)
    files = sorted(p for p in Path(photos).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    samples = []
    for f in files:
        bgr = cv2.imread(str(f))
        if bgr is None:
            continue
        small = cv2.resize(bgr, (64, 64), interpolation=cv2.INTER_AREA)
        lab = rgb_to_lab(cv2.cvtColor(small, cv2.COLOR_BGR2RGB)).reshape(-1, 3)
        sat = lab[np.hypot(lab[:, 1], lab[:, 2]) > MIN_CHROMA]
        if len(sat):
            samples.append(sat[rng.choice(len(sat), min(PIXELS_PER_PHOTO, len(sat)), replace=False)])
    data = np.concatenate(samples).astype(np.float64)
    gmm = GaussianMixture(COMPONENTS, covariance_type="full", random_state=0, max_iter=300).fit(data)
    out = {
        "space": "CIE Lab (D65), L in [0, 100], ab in about [-128, 127]",
        "source": f"{len(files)} photos of ../shared/data/photos, {len(data)} pixels with chroma > {MIN_CHROMA}",
        "weights": gmm.weights_.tolist(),
        "means": gmm.means_.tolist(),
        "covariances": gmm.covariances_.tolist(),
    }
    target = Path(__file__).resolve().parents[1] / "chromaflow" / "data" / "palette_gmm.json"
    target.write_text(json.dumps(out, indent=1))
    print(f"wrote {target}: {len(data)} samples from {len(files)} photos")


if __name__ == "__main__":
    main(sys.argv[1])
