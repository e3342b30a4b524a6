"""Neural network definitions (PyTorch).  They know nothing of files or downloads.

Attributes are imported lazily so that ``import chromaflow.models`` does not
import torch by itself.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "RAFT": "chromaflow.models.raft",
    "load_raft": "chromaflow.models.raft",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
