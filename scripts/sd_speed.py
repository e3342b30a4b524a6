"""Seconds per keyframe and per filled frame of the Stable Diffusion backends (the tiny random model).

    python scripts/sd_speed.py [--device cpu|cuda] [--resolution 512] [--steps 30] [--fill-steps 50] [--threads N]

Writes the tiny model (scripts/make_tiny_sd.py) into a temporary folder and
times ``SDColorizer.colorize`` (a 16:9 keyframe, alone and two together, with
and without the tiny ControlNet) and ``SDFill.fill`` (a frame with its right
third unknown) at the given short side.  The tiny networks are a few hundred
thousand parameters, so the figures are the backends' overhead (VAE, L_gray,
attention at the given size), not the speed of real Stable Diffusion weights.
Each figure is wall-clock seconds, then in brackets the process's CPU seconds
(all threads): on a machine shared with other work the CPU time is the steadier one.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from chromaflow.colorizers.sd import SDColorizer, SDColorizerOptions, load_sd
from chromaflow.diffusion.tiny import write_tiny_sd
from chromaflow.fill.sd import SDFill, SDFillOptions
from chromaflow.guidance.conditions import Conditions
from chromaflow.runtime import Runtime, RuntimeOptions


def _timed(fn, repeat: int) -> tuple[float, float]:
    """``(wall, cpu)`` seconds per call of ``fn``."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat, (time.process_time() - cpu) / repeat


def _fmt(t: tuple[float, float], n: int = 1) -> str:
    return f"{t[0] / n:.2f} s (CPU {t[1] / n:.2f} s)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--fill-steps", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    runtime = Runtime(RuntimeOptions(device=args.device, threads=args.threads))
    h, w = 216, 384  # the engine's default working size for a 16:9 video
    rng = np.random.default_rng(0)
    L = rng.uniform(20, 80, (2, h, w)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_tiny_sd(tmp)
        import torch

        print(f"tiny SD on {runtime.device} ({torch.get_num_threads()} CPU threads), {args.resolution} px short side, "
              f"frames {w}x{h}")
        for cnet in (None, str(folder / "controlnet")):
            o = SDColorizerOptions(model=str(folder), controlnet=cnet, resolution=args.resolution, steps=args.steps)
            col = SDColorizer(load_sd(o, runtime), o, runtime)
            what = "ControlNet" if cnet else "img2img (strength 0.8)"
            one = _timed(lambda c=col: c.colorize(L[:1], [0], Conditions()), args.repeat)
            two = _timed(lambda c=col: c.colorize(L, [0, 1], Conditions()), args.repeat)
            n = args.steps if cnet else max(1, round(args.steps * o.strength))
            print(f"colorizer, {what}, {n} steps run, L_gray 1: {_fmt(one)} per keyframe alone "
                  f"({_fmt(one, n)} per step); {_fmt(two, 2)} per keyframe for 2 joint keyframes "
                  f"({_fmt(two, 2 * n)} per step)")
        ab = rng.uniform(-30, 30, (h, w, 2)).astype(np.float32)
        conf = np.ones((h, w), np.float32)
        conf[:, 2 * w // 3:] = 0.0
        fo = SDFillOptions(model=str(folder), resolution=args.resolution, steps=args.fill_steps)
        fill = SDFill(load_sd(fo, runtime), fo, runtime)
        for gray_steps in (1, 0):
            f = SDFill(fill.runner.parts, SDFillOptions(model=str(folder), resolution=args.resolution,
                                                        steps=args.fill_steps, gray_steps=gray_steps), runtime)
            s = _timed(lambda f=f: f.fill(L[0], ab, conf), args.repeat)
            print(f"fill, {args.fill_steps} steps, L_gray {gray_steps}: {_fmt(s)} per filled frame "
                  f"({_fmt(s, args.fill_steps)} per step)")


if __name__ == "__main__":
    main()
