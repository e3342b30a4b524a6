"""Average the weights of networks fine-tuned from one starting point (a "model soup").

Networks that started from the same weights stay close enough in parameter space
that their weighted mean is itself a good network, and usually better than each
(Wortsman et al. 2022, "Model soups").  It costs nothing at inference, unlike an
ensemble.  See :func:`chromaflow.models.weights.average_models`.

Example (the shipped third-generation regression model, see the model card)::

    python scripts/average_weights.py runs/previous/chroma_regression_v2.safetensors \\
        runs/regression_v3a/model.safetensors --weights 0.5,0.5 -o chroma_regression.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chromaflow.errors import InputError
from chromaflow.models.weights import average_models, save_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path, help="weights files (.safetensors) of the same network")
    ap.add_argument("--weights", default="", help="comma-separated shares (default: equal)")
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args()
    try:
        shares = ([float(x) for x in args.weights.split(",")] if args.weights
                  else [1 / len(args.files)] * len(args.files))
        net, meta = average_models(args.files, shares)
    except (InputError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    extra = {k: v for k, v in meta.items() if k not in ("config", "kind")}
    extra["soup"] = " + ".join(f"{w:.4g} x {p}" for w, p in zip(shares, args.files))
    save_model(net, args.out, kind=meta.get("kind", "regression"), extra=extra)
    print(f"wrote {args.out} ({extra['soup']})")


if __name__ == "__main__":
    main()
