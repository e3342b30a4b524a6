"""Compare two ``chromaflow bench`` reports clip by clip (a refactor must not move the figures).

    python scripts/compare_bench.py before/bench.json after/bench.json [--modes exemplar,auto,palette]

Prints a Markdown table per mode: PSNR before and after and their difference,
CDC before and after, seconds per frame before and after; then the largest
absolute PSNR difference of each mode.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--modes", default="exemplar,auto,palette")
    args = ap.parse_args()
    a, b = (json.loads(p.read_text())["clips"] for p in (args.before, args.after))
    for mode in args.modes.split(","):
        print(f"\n### {mode}\n")
        print("| clip | PSNR before | PSNR after | diff | CDC before | CDC after | s/frame before | s/frame after |")
        print("|---|---|---|---|---|---|---|---|")
        worst, sums = 0.0, [0.0, 0.0, 0.0, 0.0, 0]
        for clip in sorted(set(a) & set(b)):
            x, y = a[clip].get(mode), b[clip].get(mode)
            if not x or not y:
                continue
            pa, pb = x["video"]["psnr"], y["video"]["psnr"]
            worst = max(worst, abs(pb - pa))
            sums = [sums[0] + pa, sums[1] + pb, sums[2] + x["seconds_per_frame"], sums[3] + y["seconds_per_frame"],
                    sums[4] + 1]
            print(f"| {clip} | {pa:.2f} | {pb:.2f} | {pb - pa:+.3f} | {x['video']['cdc']:.5f} | {y['video']['cdc']:.5f} "
                  f"| {x['seconds_per_frame']:.4f} | {y['seconds_per_frame']:.4f} |")
        n = max(1, sums[4])
        print(f"| **mean ({sums[4]})** | {sums[0] / n:.2f} | {sums[1] / n:.2f} | {(sums[1] - sums[0]) / n:+.3f} | | "
              f"| {sums[2] / n:.4f} | {sums[3] / n:.4f} |")
        print(f"\nlargest |PSNR difference| per clip: {worst:.3f} dB")


if __name__ == "__main__":
    main()
