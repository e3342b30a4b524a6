"""Prompt benchmark data and prompt adherence.

A prompts file (TOML; ours is ``benchmarks/prompts.toml``) gives, per clip, a
prompt naming the true colours of a few objects and hand-drawn boxes inside
those objects on a few frames::

    [dog]
    prompt = "a white dog, a woman in blue jeans"
    boxes = [{ frame = 30, object = "dog", box = [0.44, 0.48, 0.54, 0.68] }]

Boxes are ``[x0, y0, x1, y1]`` fractions of the frame's width and height.

Adherence (:func:`box_adherence`) is measured inside each box with CIEDE2000:

* ``to_gt``: mean distance between the output's and the ground truth's colours;
* ``to_named``: mean distance between the output's colours and the named
  colour *at each pixel's own lightness* (the output keeps the input's
  lightness, so only the chroma the colorizer chose is judged).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.color import deltaE_ciede2000

from chromaflow.color.lab import rgb_to_lab
from chromaflow.errors import InputError
from chromaflow.guidance.grounding import object_phrases
from chromaflow.guidance.prompt import parse_prompt


@dataclass(frozen=True)
class ObjectBox:
    """A box inside a named object on one frame.

    Attributes:
        frame: frame index.
        object: the object as the prompt names it.
        box: ``(x0, y0, x1, y1)`` fractions of width and height.
    """

    frame: int
    object: str
    box: tuple[float, float, float, float]

    def pixels(self, height: int, width: int) -> tuple[slice, slice]:
        """Row and column slices of the box in a ``height x width`` frame (at least one pixel)."""
        x0, y0, x1, y1 = self.box
        r0, c0 = int(y0 * height), int(x0 * width)
        return slice(r0, max(r0 + 1, int(round(y1 * height)))), slice(c0, max(c0 + 1, int(round(x1 * width))))


@dataclass(frozen=True)
class PromptSpec:
    """A clip's prompt and its boxes; ``named`` maps each object to its named sRGB colour."""

    prompt: str
    boxes: tuple[ObjectBox, ...]
    named: dict[str, np.ndarray]


def load_prompts(path: str | Path) -> dict[str, PromptSpec]:
    """Read a prompts file.

    Raises:
        InputError: unreadable file, a box outside ``[0, 1]`` or inverted, or a
            box naming an object the prompt gives no colour.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"prompts file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read prompts file {path}: {exc}") from None
    out: dict[str, PromptSpec] = {}
    for clip, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("prompt"), str):
            raise InputError(f"{path}: [{clip}] needs a prompt = \"...\"")
        named = {p.object: p.rgb for p in object_phrases(parse_prompt(entry["prompt"]))}
        boxes = []
        for b in entry.get("boxes", []):
            try:
                box = ObjectBox(int(b["frame"]), str(b["object"]), tuple(float(v) for v in b["box"]))
            except (KeyError, TypeError, ValueError):
                raise InputError(f"{path}: [{clip}] has a box without frame, object and box = [x0, y0, x1, y1]") from None
            x0, y0, x1, y1 = box.box if len(box.box) == 4 else (1, 1, 0, 0)
            if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
                raise InputError(f"{path}: [{clip}] box {list(box.box)} is not inside [0, 1] with x0 < x1, y0 < y1")
            if box.object not in named:
                raise InputError(f"{path}: [{clip}] box names {box.object!r}, which the prompt gives no colour")
            boxes.append(box)
        out[clip] = PromptSpec(entry["prompt"], tuple(boxes), named)
    return out


def box_adherence(output_rgb: np.ndarray, gt_rgb: np.ndarray, box: ObjectBox, named_rgb: np.ndarray) -> dict:
    """CIEDE2000 distances inside one box (see the module docstring).

    Args:
        output_rgb: ``(H, W, 3)`` ``uint8`` colorized frame.
        gt_rgb: ``(H, W, 3)`` ``uint8`` ground-truth frame.
        box: the box.
        named_rgb: ``(3,)`` ``uint8`` the colour the prompt names for the object.

    Returns:
        ``{"frame", "object", "to_gt", "to_named", "gt_to_named", "pixels"}``;
        ``gt_to_named`` is the ground truth's own distance to the named colour
        (how well the prompt describes the truth).
    """
    rows, cols = box.pixels(*output_rgb.shape[:2])
    out = rgb_to_lab(np.ascontiguousarray(output_rgb[rows, cols])).reshape(-1, 3).astype(np.float64)
    gt = rgb_to_lab(np.ascontiguousarray(gt_rgb[rows, cols])).reshape(-1, 3).astype(np.float64)
    named = rgb_to_lab(np.asarray(named_rgb, np.uint8).reshape(1, 1, 3)).reshape(3).astype(np.float64)

    def at_lightness(lab: np.ndarray) -> np.ndarray:
        ref = np.empty_like(lab)
        ref[:, 0] = lab[:, 0]
        ref[:, 1:] = named[1:]
        return ref

    return {
        "frame": box.frame,
        "object": box.object,
        "to_gt": float(deltaE_ciede2000(out, gt).mean()),
        "to_named": float(deltaE_ciede2000(out, at_lightness(out)).mean()),
        "gt_to_named": float(deltaE_ciede2000(gt, at_lightness(gt)).mean()),
        "pixels": int(len(out)),
    }
