"""Seconds per keyframe of each keyframe colorizer and fill step at a frame size (random weights: timing only).

    python scripts/colorizer_speed.py [--size 854x480] [--device cpu|cuda] [--precision float32|float16]
        [--repeats 3] [--backends ddcolor-large,ddcolor-tiny,siggraph17,eccv16,model,fill-siggraph17]

Each network is built in its official layout with random weights (the
publishers' files are not needed to time them), then called through the
backend exactly as the engine calls it: ``colorize`` on a batch of keyframes
(1 and 4) of gray frames of that size, or ``fill`` on one frame with half of
it known.  Prints the median seconds per keyframe (or per filled frame).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, cudnn autotune)
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="854x480")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="float32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backends", default="ddcolor-large,ddcolor-tiny,siggraph17,eccv16,model,fill-siggraph17")
    ap.add_argument("--ddcolor-size", type=int, default=512)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))

    from chromaflow.color.lab import gray_to_lightness
    from chromaflow.colorizers.ddcolor import DDColorColorizer
    from chromaflow.colorizers.zhang import ECCV16Colorizer, SIGGRAPH17Colorizer
    from chromaflow.fill.siggraph17 import SIGGRAPH17Fill
    from chromaflow.guidance.conditions import Conditions
    from chromaflow.models.ddcolor import DDColorConfig, DDColorNet
    from chromaflow.models.zhang import ECCV16Net, SIGGRAPH17Net
    from chromaflow.runtime import Runtime, RuntimeOptions

    runtime = Runtime(RuntimeOptions(device=args.device, precision=args.precision))
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 255, (4, h, w), dtype=np.uint8)
    gray = np.stack([np.asarray(__import__("cv2").GaussianBlur(g, (0, 0), 3)) for g in gray])
    L = gray_to_lightness(gray)
    print(f"device {runtime.device} ({args.precision}), frames {w}x{h}, torch threads {torch.get_num_threads()}")
    for name in args.backends.split(","):
        torch.manual_seed(0)
        if name.startswith("fill-"):
            fill = SIGGRAPH17Fill(SIGGRAPH17Net().eval(), runtime, max_side=512)
            ab = rng.uniform(-30, 30, (h, w, 2)).astype(np.float32)
            conf = np.zeros((h, w), np.float32)
            conf[:, : w // 2] = 1.0
            s = _time(lambda f=fill, a=ab, c=conf: f.fill(L[0], a, c), args.repeats)
            print(f"{name:18s} {s:7.3f} s per filled frame")
            continue
        if name == "model":
            from chromaflow.colorizers.chroma_model import ChromaModel, ModelColorizer, ModelOptions

            col = ModelColorizer(ChromaModel.load(ModelOptions(), runtime))
        elif name.startswith("ddcolor"):
            enc = "convnext-l" if name.endswith("large") else "convnext-t"
            col = DDColorColorizer(DDColorNet(DDColorConfig(encoder=enc)).eval(), runtime, args.ddcolor_size, 4,
                                   half_safe=False)
        elif name == "siggraph17":
            col = SIGGRAPH17Colorizer(SIGGRAPH17Net().eval(), runtime, 256, 4)
        elif name == "eccv16":
            col = ECCV16Colorizer(ECCV16Net().eval(), runtime, 256, 4)
        else:
            raise SystemExit(f"unknown backend {name}")
        one = _time(lambda c=col: c.colorize(L[:1], [0], Conditions()), args.repeats)
        four = _time(lambda c=col: c.colorize(L, [0, 1, 2, 3], Conditions()), args.repeats) / 4
        print(f"{name:18s} {one:7.3f} s per keyframe alone, {four:7.3f} s per keyframe in a batch of 4")


if __name__ == "__main__":
    main()
