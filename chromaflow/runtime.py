"""Where torch components run: the device, the CPU threads, the precision, and shared networks.

A :class:`Runtime` is made once per run (or once per server) from
:class:`RuntimeOptions` and handed to every backend factory.  It

* resolves ``device`` (``auto`` picks CUDA, then MPS, when torch sees one; an
  explicit ``cuda`` on a machine without CUDA is a one-line
  :class:`~chromaflow.errors.InputError`);
* sets torch's CPU threads once (never per call);
* holds the networks several components share (the frozen EfficientNet-Lite0
  encoder, the sentence encoder), loaded once and kept by key, so a colorizer,
  a grounder and the semantic matcher read one copy.

Noise for sampling is made on :attr:`Runtime.device` with a generator of that
device (:meth:`Runtime.generator`); on CPU that is bit for bit what
``torch.Generator().manual_seed(seed)`` gives.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from chromaflow.errors import InputError

T = TypeVar("T")

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
PRECISIONS = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class RuntimeOptions:
    """Device and threads for every torch component.

    Attributes:
        device: ``auto`` (a CUDA GPU, else Apple MPS, else the CPU), ``cpu``,
            ``cuda``, ``cuda:N`` or ``mps``.
        threads: torch CPU threads (0: torch's default, one per core).
        precision: ``float32``; or ``float16`` / ``bfloat16`` autocast for
            the networks on a GPU (the CPU always runs float32).
    """

    device: str = "auto"
    threads: int = 0
    precision: str = "float32"

    def __post_init__(self) -> None:
        if not _DEVICE.match(str(self.device).strip().lower()):
            raise InputError(f"unknown device {self.device!r}; use auto, cpu, cuda, cuda:N or mps")
        if int(self.threads) < 0:
            raise InputError(f"threads must be 0 (default) or positive, got {self.threads}")
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}")


def resolve_device(spec: str) -> str:
    """The torch device string ``spec`` stands for on this machine.

    Raises:
        InputError: a CUDA / MPS device this machine does not have.
    """
    import torch

    spec = str(spec).strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {spec}: torch sees no CUDA GPU here (use --device cpu or auto)")
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise InputError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) here")
    if spec == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InputError("--device mps: torch sees no Apple MPS device here (use --device cpu or auto)")
    return spec


class Runtime:
    """A resolved device plus the networks shared between components (see module doc).

    Args:
        options: :class:`RuntimeOptions`.
    """

    def __init__(self, options: RuntimeOptions | None = None) -> None:
        import torch

        self.options = options or RuntimeOptions()
        self.device = torch.device(resolve_device(self.options.device))
        if self.options.threads:
            torch.set_num_threads(int(self.options.threads))
        self._shared: dict[Any, Any] = {}
        self._lock = threading.Lock()

    @property
    def dtype(self):
        """The autocast dtype of the networks (``torch.float32`` on CPU, whatever was asked)."""
        import torch

        if self.device.type == "cpu":
            return torch.float32
        return getattr(torch, self.options.precision)

    def autocast(self):
        """A context for network forward passes: autocast to :attr:`dtype` off the CPU, else nothing."""
        import contextlib

        import torch

        if self.device.type == "cpu" or self.options.precision == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def generator(self, seed: int):
        """A torch generator on :attr:`device` seeded with ``seed`` (the sampler's noise is made there)."""
        import torch

        return torch.Generator(device=self.device).manual_seed(int(seed))

    def shared(self, key: Any, factory: Callable[[], T]) -> T:
        """The object stored under ``key``, made by ``factory()`` on first use (thread-safe)."""
        with self._lock:
            if key not in self._shared:
                self._shared[key] = factory()
            return self._shared[key]

    def encoder(self):
        """The frozen ImageNet EfficientNet-Lite0 (features and classifier) on :attr:`device`, loaded once."""
        from chromaflow.models.efficientnet import load_efficientnet_lite0

        return self.shared("efficientnet-lite0", lambda: load_efficientnet_lite0(pretrained=True).to(self.device).eval())

    def text_encoder(self):
        """The all-MiniLM-L6-v2 sentence encoder on :attr:`device`, loaded once."""
        from chromaflow.models.text import TextEncoder

        return self.shared("minilm", lambda: TextEncoder(device=str(self.device)))


_DEFAULT: Runtime | None = None


def default_runtime() -> Runtime:
    """A process-wide CPU runtime for code called without one (library use, tests, scripts)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Runtime(RuntimeOptions(device="cpu"))
    return _DEFAULT
