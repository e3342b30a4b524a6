"""Write tests/data/ddcolor_reference.json from spandrel-extra-arches' DDColor (an independent port).

Run in an environment with spandrel and spandrel-extra-arches (which need torchvision):

    python scripts/ddcolor_reference.py tests/data/ddcolor_reference.json

It records the parameter names and shapes of DDColor-tiny and DDColor-L in the
official layout (the publisher's ``ddcolor_arch.py``) and the output of DDColor-tiny
for weights drawn by ``reference_state_dict`` below on a fixed input, so the tests
check that chromaflow's own implementation loads the same layout strictly and
computes the same function.
"""

import json
import sys

import torch


def reference_state_dict(shapes, seed=0):
    """Deterministic weights for a key -> shape map (the same recipe as tests/test_colorizers.py)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(shapes):
        shape = shapes[key]
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros(shape, dtype=torch.long)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        else:
            out[key] = torch.randn(shape, generator=g) * 0.05
    return out


def main(path):
    from spandrel_extra_arches.architectures.DDColor.__arch.ddcolor import DDColor

    torch.manual_seed(0)
    result = {}
    for name, enc in (("tiny", "convnext-t"), ("large", "convnext-l")):
        net = DDColor(encoder_name=enc, decoder_name="MultiScaleColorDecoder", input_size=(64, 64),
                      num_output_channels=2, last_norm="Spectral", do_normalize=False, num_queries=100,
                      num_scales=3, dec_layers=9)
        shapes = {k: list(v.shape) for k, v in net.state_dict().items()}
        result[name] = shapes
        if name == "tiny":
            net.load_state_dict(reference_state_dict(shapes), strict=True)
            net.eval()
            g = torch.Generator().manual_seed(1)
            gray = torch.rand(1, 1, 64, 64, generator=g).repeat(1, 3, 1, 1)
            with torch.no_grad():
                out = net(gray)
            result["tiny_output"] = {"shape": list(out.shape), "mean": float(out.mean()), "std": float(out.std()),
                                     "sample": [float(v) for v in out.flatten()[::997][:40]]}
    with open(path, "w") as f:
        json.dump(result, f, separators=(",", ":"))


if __name__ == "__main__":
    main(sys.argv[1])
