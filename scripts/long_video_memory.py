"""Peak memory of a colorization run on a long synthetic video (run on an idle machine).

    python scripts/long_video_memory.py --frames 10000 --size 320x240

Writes a gray video of textured shapes drifting across a textured background
(with a scene change every 2,000 frames), colorizes it from a colour version of
frame 0 in a fresh process, and prints frames, seconds and peak resident memory.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np


def _frame(i: int, w: int, h: int, scene: int) -> np.ndarray:
    rng = np.random.default_rng(scene)
    base = cv2.resize(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    img = np.roll(base, (i % 200) // 2, axis=1).copy()
    x = 20 + (3 * i) % (w - 60)
    cv2.rectangle(img, (x, h // 3), (x + 40, h // 3 + 40), (220, 40, 40), -1)
    cv2.circle(img, (w - 30 - (2 * i) % (w - 60), 2 * h // 3), 18, (40, 60, 200), -1)
    return img


def _colorize(q, src: Path, ref: Path, out: Path) -> None:
    import chromaflow

    opts = chromaflow.ColorizeOptions(references=(chromaflow.ReferenceSpec(ref, 0),), overwrite=True, progress=False)
    t0 = time.perf_counter()
    res = chromaflow.colorize(src, out, opts)
    q.put((res.frames, time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--size", default="320x240")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        src, ref = tmp / "long.mp4", tmp / "ref0.png"
        out = av.open(str(src), "w")
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(args.frames):
            rgb = _frame(i, w, h, i // 2000)
            if i == 0:
                cv2.imwrite(str(ref), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            g = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
            f = av.VideoFrame.from_ndarray(g, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
        out.close()
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=_colorize, args=(q, src, ref, tmp / "out.mp4"))
        p.start()
        n, dt, mem = q.get()
        p.join()
        print(f"{n} frames {w}x{h}: {dt:.0f} s ({n / dt:.1f} fps), peak resident memory {mem:.0f} MB")


if __name__ == "__main__":
    main()
