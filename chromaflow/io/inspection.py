"""Files that show why a region got its colour: ``--save-masks DIR``.

For every frame whose prompt objects were grounded (the keyframes the model
colours, and frames where objects came into view), :class:`GroundingWriter`
writes into DIR:

* ``frame_000120_mask_1_car_coco.png``: the object's mask, 8-bit (255 = inside), named
  after the grounder that found it (``coco``, ``parts``, ``cam``, ...);
* ``frame_000120_hints.png``: the gray frame with the hint colours laid over
  it, opacity = hint confidence;
* one line per object in ``grounding.tsv``: frame, object, colour, hex, the
  grounder, the classes that made the mask, the evidence and the mask's area.

Every file is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np

from chromaflow.color.lab import compose_rgb
from chromaflow.errors import OutputError
from chromaflow.guidance.grounding import Grounding

TSV_HEADER = "frame\tobject\tcolor\thex\tgrounder\tclasses\tevidence\tarea\n"


def write_png(path: Path, image: np.ndarray) -> None:
    """Write an ``(H, W)`` or ``(H, W, 3)`` ``uint8`` (RGB) image atomically (temporary name, then rename)."""
    arr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise OutputError(f"cannot encode {path}")
    tmp = path.with_name(f".{path.name}.chromaflow-{os.getpid()}.tmp")
    buf.tofile(str(tmp))
    os.replace(tmp, path)


def label(img: np.ndarray, text: str) -> np.ndarray:
    """A copy of ``(H, W, 3)`` ``uint8`` ``img`` with ``text`` on a black strip at its top left."""
    out = np.ascontiguousarray(img).copy()
    cv2.rectangle(out, (0, 0), (min(out.shape[1], 8 + 8 * len(text)), 18), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "object"


class GroundingWriter:
    """Saves masks and hints as they are made (a ``ModelColorizer`` ``on_grounding`` callback).

    Args:
        folder: where to write; created if missing (its parent must exist).

    Raises:
        OutputError: the folder cannot be created or is a file.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputError(f"--save-masks: {self.folder} is a file")
        try:
            self.folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise OutputError(f"--save-masks: cannot create {self.folder}: {exc.strerror}") from None
        self._rows: list[str] = []

    def __call__(self, frame: int, gray: np.ndarray, grounding: Grounding) -> None:
        """Write one frame's masks, hint overlay and table rows.

        Args:
            frame: the frame's index in the video.
            gray: ``(h, w)`` ``uint8`` luminance the masks were found on.
            grounding: the frame's :class:`~chromaflow.guidance.grounding.Grounding`.
        """
        for k, obj in enumerate(grounding.objects, start=1):
            mask = np.clip(np.rint(obj.mask * 255.0), 0, 255).astype(np.uint8)
            by = f"_{_slug(obj.grounder)}" if obj.grounder else ""
            write_png(self.folder / f"frame_{frame:06d}_mask_{k}_{_slug(obj.phrase.object or '')}{by}.png", mask)
            hex_code = "#" + "".join(f"{int(c):02x}" for c in obj.phrase.rgb)
            self._rows.append(
                f"{frame}\t{obj.phrase.object}\t{obj.phrase.name}\t{hex_code}\t{obj.grounder or '-'}\t"
                f"{', '.join(obj.classes) or '-'}\t"
                f"{obj.evidence:.4f}\t{float((obj.mask >= 0.5).mean()):.4f}\n"
            )
        colored = compose_rgb(gray, grounding.hint_ab).astype(np.float32)
        gray3 = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
        alpha = grounding.hint_conf[..., None]
        write_png(self.folder / f"frame_{frame:06d}_hints.png", np.rint(gray3 * (1 - alpha) + colored * alpha).astype(np.uint8))
        table = self.folder / "grounding.tsv"
        tmp = table.with_name(f".{table.name}.chromaflow-{os.getpid()}.tmp")
        tmp.write_text(TSV_HEADER + "".join(self._rows), encoding="utf-8")
        os.replace(tmp, table)
