"""A list of per-frame arrays that spills to disk past a memory budget.

The temporal engine holds the frames between two anchors; a long gap (two
references a thousand frames apart) must not make memory grow with it, so
items past ``budget_bytes`` are written to a temporary folder and read back
on access.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


class SpillList:
    """Append-only list of dicts of numpy arrays (plus plain values), bounded in memory.

    Args:
        budget_bytes: arrays held in memory at most; later items go to disk.
    """

    def __init__(self, budget_bytes: int = 512 * 2**20) -> None:
        self.budget = budget_bytes
        self._items: list[dict[str, Any] | Path] = []
        self._bytes = 0
        self._dir: Path | None = None

    def append(self, item: dict[str, Any]) -> None:
        size = sum(v.nbytes for v in item.values() if isinstance(v, np.ndarray))
        if self._bytes + size <= self.budget:
            self._items.append(item)
            self._bytes += size
            return
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="chromaflow-spill-"))
        path = self._dir / f"{len(self._items):08d}.npz"
        arrays = {k: v for k, v in item.items() if isinstance(v, np.ndarray)}
        scalars = {k: np.asarray(v) for k, v in item.items() if not isinstance(v, np.ndarray)}
        np.savez(path, **arrays, **{f"__s_{k}": v for k, v in scalars.items()})
        self._items.append(path)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self._items[i]
        if isinstance(item, Path):
            with np.load(item) as data:
                out: dict[str, Any] = {}
                for k in data.files:
                    if k.startswith("__s_"):
                        out[k[4:]] = data[k].item()
                    else:
                        out[k] = data[k]
                return out
        return item

    def set(self, i: int, key: str, value: np.ndarray) -> None:
        """Replace one array of item ``i`` (in memory or on disk)."""
        item = self._items[i]
        if isinstance(item, Path):
            full = self[i]
            full[key] = value
            arrays = {k: v for k, v in full.items() if isinstance(v, np.ndarray)}
            scalars = {f"__s_{k}": np.asarray(v) for k, v in full.items() if not isinstance(v, np.ndarray)}
            np.savez(item, **arrays, **scalars)
        else:
            item[key] = value

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __del__(self) -> None:
        self.clear()
