"""Zhang et al.'s colorization networks: ECCV 2016 ("Colorful Image Colorization") and
SIGGRAPH 2017 ("Real-Time User-Guided Image Colorization with Learned Deep Priors").

Inference only, in plain PyTorch.  Module and parameter names follow the
official PyTorch ports (https://github.com/richzhang/colorization,
``colorizers/eccv16.py`` and ``colorizers/siggraph17.py``), so the official
files ``colorization_release_v2-9b330a0b.pth`` and ``siggraph17-df00044c.pth``
load with ``load_state_dict(strict=True)``.

Conventions (as the official code): the input lightness is Lab L in
``[0, 100]`` (normalised inside as ``(L - 50) / 100``), ab is divided by 110,
SIGGRAPH17's hint mask is 1 where a hint is given and 0 elsewhere; both
networks return Lab ab (about ``[-110, 110]``).  The official demos run them
at 256 x 256; any size divisible by 8 works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ECCV16Net", "SIGGRAPH17Net", "L_CENT", "L_NORM", "AB_NORM"]

L_CENT, L_NORM, AB_NORM = 50.0, 100.0, 110.0


def _block(channels: list[int], *, stride_last: int = 1, dilation: int = 1, init_relu: bool = False,
           norm: bool = True, dropout: bool = False) -> nn.Sequential:
    """Conv+ReLU pairs through ``channels``, then BatchNorm (the official ``build_basic_block`` layout)."""
    layers: list[nn.Module] = [nn.ReLU(True)] if init_relu else []
    pairs = list(zip(channels[:-1], channels[1:]))
    for i, (cin, cout) in enumerate(pairs):
        stride = stride_last if i == len(pairs) - 1 else 1
        layers += [nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=True), nn.ReLU(True)]
    if norm:
        layers.append(nn.BatchNorm2d(channels[-1]))
    if dropout:
        layers.append(nn.Dropout(0.0))  # the official block ends with Dropout(0): no parameters, kept for the indices
    return nn.Sequential(*layers)


class ECCV16Net(nn.Module):
    """ECCV 2016: L ``(N, 1, H, W)`` in ``[0, 100]`` -> ab ``(N, 2, H, W)``.

    313 ab-bin logits at 1/4 size, softmax, expectation through ``model_out``
    (whose weights hold the bin centres), bilinear upsampling by 4.
    """

    def __init__(self) -> None:
        super().__init__()
        self.model1 = _block([1, 64, 64], stride_last=2)
        self.model2 = _block([64, 128, 128], stride_last=2)
        self.model3 = _block([128, 256, 256, 256], stride_last=2)
        self.model4 = _block([256, 512, 512, 512])
        self.model5 = _block([512, 512, 512, 512], dilation=2)
        self.model6 = _block([512, 512, 512, 512], dilation=2)
        self.model7 = _block([512, 512, 512, 512])
        self.model8 = nn.Sequential(
            nn.ConvTranspose2d(512, 256, kernel_size=4, stride=2, padding=1, bias=True), nn.ReLU(True),
            nn.Conv2d(256, 256, 3, padding=1, bias=True), nn.ReLU(True),
            nn.Conv2d(256, 256, 3, padding=1, bias=True), nn.ReLU(True),
            nn.Conv2d(256, 313, 1, bias=True),
        )
        self.model_out = nn.Conv2d(313, 2, kernel_size=1, bias=False)

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        x = (lightness - L_CENT) / L_NORM
        for block in (self.model1, self.model2, self.model3, self.model4, self.model5, self.model6, self.model7,
                      self.model8):
            x = block(x)
        out = self.model_out(F.softmax(x, dim=1))
        return F.interpolate(out, scale_factor=4, mode="bilinear") * AB_NORM


class SIGGRAPH17Net(nn.Module):
    """SIGGRAPH 2017 user-guided network: L, sparse ab hints and their mask -> ab.

    ``forward(L (N,1,H,W) in [0,100], hint_ab (N,2,H,W) Lab ab, mask (N,1,H,W) in {0,1})``
    returns ``(N, 2, H, W)`` Lab ab.  ``H`` and ``W`` must be divisible by 8.
    The classification branch (``model_class``, 529 bins) is in the files and
    unused at inference, as in the official code.
    """

    def __init__(self, classes: int = 529) -> None:
        super().__init__()
        self.model1 = _block([4, 64, 64], dropout=True)
        self.model2 = _block([64, 128, 128], dropout=True)
        self.model3 = _block([128, 256, 256, 256], dropout=True)
        self.model4 = _block([256, 512, 512, 512], dropout=True)
        self.model5 = _block([512, 512, 512, 512], dilation=2, dropout=True)
        self.model6 = _block([512, 512, 512, 512], dilation=2, dropout=True)
        self.model7 = _block([512, 512, 512, 512], dropout=True)
        self.model8up = nn.Sequential(nn.ConvTranspose2d(512, 256, kernel_size=4, stride=2, padding=1, bias=True))
        self.model3short8 = nn.Sequential(nn.Conv2d(256, 256, 3, padding=1, bias=True))
        self.model8 = _block([256, 256, 256], init_relu=True, dropout=True)
        self.model9up = nn.Sequential(nn.ConvTranspose2d(256, 128, kernel_size=4, stride=2, padding=1, bias=True))
        self.model2short9 = nn.Sequential(nn.Conv2d(128, 128, 3, padding=1, bias=True))
        self.model9 = _block([128, 128], init_relu=True, dropout=True)
        self.model10up = nn.Sequential(nn.ConvTranspose2d(128, 128, kernel_size=4, stride=2, padding=1, bias=True))
        self.model1short10 = nn.Sequential(nn.Conv2d(64, 128, 3, padding=1, bias=True))
        self.model10 = nn.Sequential(nn.ReLU(True), nn.Conv2d(128, 128, 3, padding=1, bias=True), nn.LeakyReLU(0.2))
        self.model_class = nn.Sequential(nn.Conv2d(256, classes, kernel_size=1, bias=True))
        self.model_out = nn.Sequential(nn.Conv2d(128, 2, kernel_size=1, bias=True), nn.Tanh())

    def forward(self, lightness: torch.Tensor, hint_ab: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        if hint_ab is None:
            hint_ab = torch.zeros_like(lightness).repeat(1, 2, 1, 1)
        if mask is None:
            mask = torch.zeros_like(lightness)
        x = torch.cat(((lightness - L_CENT) / L_NORM, hint_ab / AB_NORM, mask), dim=1)
        conv1 = self.model1(x)
        conv2 = self.model2(conv1[:, :, ::2, ::2])
        conv3 = self.model3(conv2[:, :, ::2, ::2])
        conv7 = self.model7(self.model6(self.model5(self.model4(conv3[:, :, ::2, ::2]))))
        conv8 = self.model8(self.model8up(conv7) + self.model3short8(conv3))
        conv9 = self.model9(self.model9up(conv8) + self.model2short9(conv2))
        conv10 = self.model10(self.model10up(conv9) + self.model1short10(conv1))
        return self.model_out(conv10) * AB_NORM
