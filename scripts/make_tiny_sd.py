"""Write a tiny, randomly initialised Stable Diffusion folder (diffusers layout) plus a tiny ControlNet.

    python scripts/make_tiny_sd.py DIR [--inpainting]

then ``chromaflow colorize clip.mp4 -o out.mp4 --colorizer sd --fill sd --sd-model DIR``
(``--controlnet DIR/controlnet`` for the ControlNet path) runs every code path
of the Stable Diffusion backends on a CPU in seconds; ``--inpainting`` writes an
inpainting UNet (9 input channels) and no ControlNet.  The colours are
meaningless (random weights); nothing is downloaded.
"""

from __future__ import annotations

import sys

from chromaflow.diffusion.tiny import write_tiny_sd


def main(argv: list[str]) -> int:
    inpainting = "--inpainting" in argv
    args = [a for a in argv if a != "--inpainting"]
    if len(args) != 1:
        print("usage: python scripts/make_tiny_sd.py DIR [--inpainting]", file=sys.stderr)
        return 2
    folder = write_tiny_sd(args[0], controlnet=not inpainting, inpainting=inpainting)
    extra = "inpainting UNet" if inpainting else f"ControlNet in {folder / 'controlnet'}"
    print(f"tiny Stable Diffusion written to {folder} ({extra})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
