"""Where each grounder fires on the prompt benchmark's boxes, and how fast grounding is per keyframe.

    CHROMAFLOW_MODEL_DIR=../shared/models python scripts/grounding_bench.py ../shared/data/clips \\
        [--prompts benchmarks/prompts.toml] [--grounder auto] [--size 854x480] [--markdown OUT.md]

For every clip of the prompts file and every frame that has boxes, the gray
frame (resized to ``--size``'s longer side) is grounded with the prompt.  Per
named object with a box: which grounder found it, and whether the mask covers
the hand-drawn box (hit: at least half of the box's pixels have mask >= 0.5;
spill: the share of the mask outside its object is not measured, as the
boxes lie inside objects).  Prints per-object rows, a table per grounder (how
many of the benchmark's objects it fires on, and hits), the words no grounder
found, and the median and worst seconds per keyframe (models loaded first).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

import cv2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", type=Path)
    ap.add_argument("--prompts", type=Path, default=Path("benchmarks/prompts.toml"))
    ap.add_argument("--grounder", default="auto")
    ap.add_argument("--size", default="854x480")
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    long_side = max(int(v) for v in args.size.lower().split("x"))

    from chromaflow.bench.prompts import load_prompts
    from chromaflow.guidance.prompt import parse_prompt
    from chromaflow.io import open_source
    from chromaflow.registry import Components
    from chromaflow.runtime import Runtime, RuntimeOptions

    specs = load_prompts(args.prompts)
    grounder = Components(Runtime(RuntimeOptions(device="cpu"))).build("grounder", args.grounder)
    rows, times, slow = [], [], []
    for clip, spec in specs.items():
        path = next((p for p in args.clips.iterdir() if p.stem == clip), None)
        if path is None:
            print(f"{clip}: no clip in {args.clips}")
            continue
        prompt = parse_prompt(spec.prompt)
        wanted = sorted({b.frame for b in spec.boxes})
        frames = {}
        with open_source(path) as src:
            for f in src:
                if f.index in wanted:
                    frames[f.index] = cv2.cvtColor(f.rgb, cv2.COLOR_RGB2GRAY)
                if f.index >= max(wanted):
                    break
        for index in wanted:
            gray = frames[index]
            h, w = gray.shape
            s = long_side / max(h, w)
            gray = cv2.resize(gray, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
            grounder.ground(gray, prompt)  # warm: models loaded, caches filled
            t0 = time.perf_counter()
            g = grounder.ground(gray, prompt)
            times.append(time.perf_counter() - t0)
            slow.append((times[-1], clip, index))
            by_object = {o.phrase.object: o for o in g.objects}
            for b in spec.boxes:
                if b.frame != index:
                    continue
                o = by_object[b.object]
                rs, cs = b.pixels(*gray.shape)
                cover = float((o.mask[rs, cs] >= 0.5).mean())
                rows.append((clip, index, b.object, o.grounder or "-", cover, float((o.mask >= 0.5).mean())))
    lines = ["| clip | frame | object | grounder | box covered | mask area |", "|---|---|---|---|---|---|"]
    lines += [f"| {c} | {f} | {o} | {g} | {cov:.0%} | {a:.1%} |" for c, f, o, g, cov, a in rows]
    per = defaultdict(lambda: [0, 0])
    for _, _, _, g, cov, _ in rows:
        per[g][0] += 1
        per[g][1] += cov >= 0.5
    lines += ["", "| grounder | objects it fired on | box covered (hit) |", "|---|---|---|"]
    lines += [f"| {g} | {n} of {len(rows)} | {hit} |" for g, (n, hit) in sorted(per.items(), key=lambda x: -x[1][0])]
    missed = sorted({(c, o) for c, _, o, g, _, _ in rows if g == "-"})
    lines += ["", "not found: " + (", ".join(f"{o} ({c})" for c, o in missed) or "none")]
    hits = sum(cov >= 0.5 for *_, cov, _ in rows)
    lines += ["", f"boxes covered: {hits} of {len(rows)}; grounding per keyframe at {long_side} px: median "
                  f"{statistics.median(times):.3f} s, worst {max(times):.3f} s ({len(times)} keyframes)"]
    lines += ["slowest keyframes: " + ", ".join(f"{c} {i} {t:.3f} s" for t, c, i in sorted(slow, reverse=True)[:5])]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
