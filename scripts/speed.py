"""Speed and memory of colorization at a given size (run on an idle machine).

    python scripts/speed.py ../shared/data/clips/dog.mp4 --size 854x480 [--frames 0] [--flow dis]
        [--mode exemplar|auto] [--fill model|levin] [--prompt TEXT]

Makes a gray copy of the clip at that size (and the color frame 0 as the
reference), then, each in a fresh process so peak memory is its own:
(0) one keyframe coloured by the embedded model at that size (median of 5),
(1) the engine alone (decode + analysis + propagation + compose, no encode),
(2) the whole ``chromaflow colorize`` run (with lossless encode).  Prints
seconds per keyframe, frames per second and peak resident memory.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

import cv2


def _prepare(clip: Path, size: tuple[int, int], frames: int, tmp: Path) -> tuple[Path, Path]:
    import av
    import numpy as np

    from chromaflow.io import open_source

    gray_path, ref_path = tmp / "gray.mp4", tmp / "ref0.png"
    out = av.open(str(gray_path), "w")
    stream = out.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    stream.options = {"crf": "12"}
    with open_source(clip) as src:
        for f in src:
            if frames and f.index >= frames:
                break
            rgb = cv2.resize(f.rgb, size, interpolation=cv2.INTER_AREA)
            if f.index == 0:
                cv2.imwrite(str(ref_path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            g = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(g), format="rgb24")
            vf.pts = f.index
            for p in stream.encode(vf):
                out.mux(p)
    for p in stream.encode(None):
        out.mux(p)
    out.close()
    return gray_path, ref_path


def _keyframe(q, gray: Path) -> None:
    import numpy as np

    from chromaflow.color.lab import gray_to_lightness, rgb_to_gray
    from chromaflow.colorizers.chroma_model import ChromaModel, Guidance
    from chromaflow.io import open_source

    with open_source(gray) as src:
        frame = next(iter(src)).rgb
    light = gray_to_lightness(rgb_to_gray(frame))[None]
    model = ChromaModel.load()
    model.predict(light, Guidance(seed=0))  # warm-up
    times = []
    for seed in range(5):
        t0 = time.perf_counter()
        model.predict(light, Guidance(seed=seed))
        times.append(time.perf_counter() - t0)
    q.put((float(np.median(times)), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def _options(flow: str, fill: str):
    """The run configuration for a ``--flow`` spec and a fill name."""
    from chromaflow.pipeline.options import Choice, ColorizeOptions
    from chromaflow.temporal.flow import parse_flow_spec

    return ColorizeOptions(flow=Choice(*parse_flow_spec(flow)), fill=fill)


def _engine_only(q, gray: Path, ref: Path, flow: str, mode: str, fill: str, prompt: str | None) -> None:
    from chromaflow.guidance import load_reference
    from chromaflow.guidance.conditions import Conditions
    from chromaflow.io import open_source
    from chromaflow.pipeline.colorize import build_engine

    with open_source(gray) as src:
        refs = (load_reference(ref, 0, src.info.width, src.info.height, src.info.n_frames),)
        cond = Conditions(references=refs if mode == "exemplar" else (), prompt=prompt)
        engine = build_engine(_options(flow, fill), cond)
        t0 = time.perf_counter()
        n = sum(1 for _ in engine.run(src, cond))
        dt = time.perf_counter() - t0
    q.put((n, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def _full_run(q, gray: Path, ref: Path, flow: str, mode: str, fill: str, prompt: str | None, out: Path) -> None:
    import chromaflow

    refs = (chromaflow.ReferenceSpec(ref, 0),) if mode == "exemplar" else ()
    from dataclasses import replace

    opts = replace(_options(flow, fill), references=refs, overwrite=True, progress=False, prompt=prompt)
    t0 = time.perf_counter()
    res = chromaflow.colorize(gray, out, opts)
    dt = time.perf_counter() - t0
    q.put((res.frames, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def _isolated(target, *args):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(q, *args))
    p.start()
    result = q.get()
    p.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clip", type=Path)
    ap.add_argument("--size", default="854x480")
    ap.add_argument("--frames", type=int, default=0, help="0: all")
    ap.add_argument("--flow", default="dis")
    ap.add_argument("--mode", choices=("exemplar", "auto"), default="exemplar")
    ap.add_argument("--fill", choices=("levin", "model"), default="levin")
    ap.add_argument("--skip-keyframe", action="store_true", help="do not time a single keyframe")
    ap.add_argument("--prompt", default=None, help="with --mode auto: a prompt (its objects are grounded)")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        gray, ref = _prepare(args.clip, size, args.frames, tmp)
        if not args.skip_keyframe:
            sec, mem = _isolated(_keyframe, gray)
            print(f"one keyframe {size[0]}x{size[1]} by the model: {sec:.3f} s (median of 5), peak {mem:.0f} MB")
        if args.prompt and args.mode != "auto":
            ap.error("--prompt goes with --mode auto")
        n, dt, mem = _isolated(_engine_only, gray, ref, args.flow, args.mode, args.fill, args.prompt)
        label = f"{args.mode}{', prompt' if args.prompt else ''}"
        print(f"engine only ({label}, fill {args.fill}): {n} frames {size[0]}x{size[1]} in {dt:.1f} s = "
              f"{n / dt:.1f} fps, peak {mem:.0f} MB")
        n, dt, mem = _isolated(_full_run, gray, ref, args.flow, args.mode, args.fill, args.prompt, tmp / "out.mp4")
        print(f"colorize (decode+engine+lossless encode): {n / dt:.1f} fps, peak {mem:.0f} MB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
