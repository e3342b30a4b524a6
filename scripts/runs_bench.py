"""Figures for long runs: resume after ``kill -9``, one vs two local workers, long-shot windows.

    python scripts/runs_bench.py ../shared/data/clips --out runs_bench

1. **Resume.**  A 300-frame clip of several shots is made from the benchmark
   clips (75 gray frames of each of four, 640x360).  A full run is timed; then
   the same command is started again, killed with SIGKILL about halfway (when
   half of its shots are finished), and run once more: the resumed run's time,
   and whether its decoded frames equal the uninterrupted run's.
2. **Scale.**  Frames per second of the whole run on that clip with
   ``--executor inprocess`` (one worker) and ``--executor pool --workers 2``,
   and the peak memory (maximum resident set) of each worker process.
3. **Seams.**  A long single shot (``pedestrians``, 795 frames) coloured in one
   piece and in windows of 200 frames: CDC and warping error of both, and the
   largest difference between their frames.

Every run is the exemplar mode (the clip's first colour frame as reference).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np

CLIPS = ("dog.mp4", "bikes.mp4", "cups.mp4", "coffee.mp4")
PER_CLIP = 75
SIZE = (640, 360)


def make_clip(clips_dir: Path, out: Path) -> tuple[Path, Path]:
    """The 300-frame gray clip and its colour reference (the first frame)."""
    container = av.open(str(out), "w")
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
    stream.options = {"crf": "12"}
    ref = out.with_name("ref0.png")
    for name in CLIPS:
        with av.open(str(clips_dir / name)) as src:
            for i, frame in enumerate(src.decode(video=0)):
                if i >= PER_CLIP:
                    break
                rgb = cv2.resize(frame.to_ndarray(format="rgb24"), SIZE, interpolation=cv2.INTER_AREA)
                if name == CLIPS[0] and i == 0:
                    cv2.imwrite(str(ref), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
                vf = av.VideoFrame.from_ndarray(np.repeat(gray[..., None], 3, axis=2), format="rgb24")
                for p in stream.encode(vf):
                    container.mux(p)
    for p in stream.encode():
        container.mux(p)
    container.close()
    return out, ref


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "chromaflow.cli", "colorize", *[str(a) for a in args], "-q", "--overwrite"]


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds of a command and the peak resident memory (MB) of its largest child process."""
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    dt = time.perf_counter() - t0
    return dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def resume_figures(clip: Path, ref: Path, tmp: Path) -> dict:
    full = tmp / "full.mp4"
    t_full, _ = timed(cli(clip, "-o", full, "--reference", ref, "--reference-frame", 0))
    out = tmp / "resumed.mp4"
    work = out.with_name(f".{out.name}.chromaflow-work")
    proc = subprocess.Popen(cli(clip, "-o", out, "--reference", ref, "--reference-frame", 0))
    killed_after = None
    t0 = time.perf_counter()
    while proc.poll() is None:
        manifest = work / "manifest.json"
        if manifest.exists():
            try:
                data = json.loads(manifest.read_text())
            except ValueError:
                data = {}
            plan, done = data.get("plan"), len(data.get("segments", {}))
            if plan and done * 2 >= len(plan["shots"]):
                proc.send_signal(signal.SIGKILL)
                killed_after = (done, len(plan["shots"]), time.perf_counter() - t0)
                break
        time.sleep(0.05)
    proc.wait()
    t_resumed, _ = timed(cli(clip, "-o", out, "--reference", ref, "--reference-frame", 0))
    equal = all(np.array_equal(a, b) for a, b in zip(frames_of(full), frames_of(out))) and \
        len(frames_of(full)) == len(frames_of(out))
    return {"full_s": t_full, "killed_after": killed_after, "resumed_s": t_resumed, "equal": equal}


def scale_figures(clip: Path, ref: Path, tmp: Path) -> dict:
    out = {}
    for label, extra in (("1 worker (inprocess)", []), ("2 workers (pool)", ["--executor", "pool", "--workers", 2])):
        # each in a fresh interpreter so the children's peak memory is its own
        code = (
            "import resource, subprocess, sys, time; t=time.perf_counter(); "
            f"subprocess.run({cli(clip, '-o', tmp / 'scale.mp4', '--reference', ref, '--reference-frame', 0, *extra)!r}, check=True); "
            "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024)"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        seconds, peak = (float(x) for x in r.stdout.split())
        out[label] = {"seconds": seconds, "fps": 300 / seconds, "peak_mb_largest_process": peak}
    return out


def seam_figures(clips_dir: Path, tmp: Path) -> dict:
    from chromaflow.metrics.accumulate import VideoMetrics

    src = clips_dir / "pedestrians.avi"
    gray = tmp / "ped_gray.mp4"
    ref = tmp / "ped_ref0.png"
    with av.open(str(src)) as c, av.open(str(gray), "w") as o:
        s = o.add_stream("libx264", rate=10)
        gt = []
        for i, f in enumerate(c.decode(video=0)):
            rgb = f.to_ndarray(format="rgb24")
            gt.append(rgb)
            if i == 0:
                s.width, s.height, s.pix_fmt = rgb.shape[1], rgb.shape[0], "yuv444p"
                s.options = {"crf": "0"}
                cv2.imwrite(str(ref), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            for p in s.encode(av.VideoFrame.from_ndarray(np.repeat(g[..., None], 3, axis=2), format="rgb24")):
                o.mux(p)
        for p in s.encode():
            o.mux(p)
    res = {}
    outs = {}
    for label, size in (("one piece", 0), ("windows of 200", 200)):
        cfg = tmp / f"w{size}.toml"
        cfg.write_text(f"[engine]\nmax_shot_frames = {size}\n")
        out = tmp / f"ped_{size}.mp4"
        t0 = time.perf_counter()
        subprocess.run(cli(gray, "-o", out, "--reference", ref, "--reference-frame", 0, "--config", cfg), check=True)
        frames = frames_of(out)
        outs[label] = frames
        m = VideoMetrics(flow_max_side=480)
        for p, g in zip(frames, gt):
            m.update(p, g)
        v = m.result()["video"]
        res[label] = {"psnr": v["psnr"], "cdc": v["cdc"], "warp_error": v["warp_error"],
                      "seconds": time.perf_counter() - t0}
    diff = max(int(np.abs(a.astype(int) - b).max()) for a, b in zip(outs["one piece"], outs["windows of 200"]))
    res["max abs difference (8-bit levels)"] = diff
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", type=Path)
    ap.add_argument("--out", type=Path, default=Path("runs_bench"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    clip, ref = make_clip(args.clips, args.out / "shots300.mp4")
    report = {"resume": resume_figures(clip, ref, args.out), "scale": scale_figures(clip, ref, args.out),
              "seams": seam_figures(args.clips, args.out), "cpus": os.cpu_count()}
    print(json.dumps(report, indent=1))
    (args.out / "runs_bench.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
