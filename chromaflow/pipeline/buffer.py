"""A list of per-frame states that spills to disk past a memory budget.

The temporal engine holds the frames between two anchors; a long gap (two
references a thousand frames apart) must not make memory grow with it, so
items past ``budget_bytes`` are written to a temporary folder and read back
on access.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")


class SpillList(Generic[T]):
    """Append-only list of dataclass items (numpy array fields plus plain values), bounded in memory.

    Args:
        budget_bytes: arrays held in memory at most; later items go to disk
            (``.npz``, one per item; ``None`` fields are not stored).
    """

    def __init__(self, budget_bytes: int = 512 * 2**20) -> None:
        self.budget = budget_bytes
        self._items: list[T | tuple[type, Path]] = []
        self._bytes = 0
        self._dir: Path | None = None

    @staticmethod
    def _fields(item: Any) -> dict[str, Any]:
        return {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}

    def append(self, item: T) -> None:
        fields = self._fields(item)
        size = sum(v.nbytes for v in fields.values() if isinstance(v, np.ndarray))
        if self._bytes + size <= self.budget:
            self._items.append(item)
            self._bytes += size
            return
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="chromaflow-spill-"))
        path = self._dir / f"{len(self._items):08d}.npz"
        self._save(path, fields)
        self._items.append((type(item), path))

    @staticmethod
    def _save(path: Path, fields: dict[str, Any]) -> None:
        arrays = {k: v for k, v in fields.items() if isinstance(v, np.ndarray)}
        scalars = {f"__s_{k}": np.asarray(v) for k, v in fields.items()
                   if v is not None and not isinstance(v, np.ndarray)}
        np.savez(path, **arrays, **scalars)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> T:
        item = self._items[i]
        if isinstance(item, tuple):
            cls, path = item
            values: dict[str, Any] = {f.name: None for f in dataclasses.fields(cls)}
            with np.load(path) as data:
                for k in data.files:
                    if k.startswith("__s_"):
                        values[k[4:]] = data[k].item()
                    else:
                        values[k] = data[k]
            return cls(**values)
        return item

    def set(self, i: int, name: str, value: Any) -> None:
        """Replace one field of item ``i`` (in memory or on disk)."""
        item = self._items[i]
        if isinstance(item, tuple):
            full = self._fields(self[i])
            full[name] = value
            self._save(item[1], full)
        else:
            setattr(item, name, value)

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __del__(self) -> None:
        self.clear()
