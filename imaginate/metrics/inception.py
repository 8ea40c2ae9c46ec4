"""Inception-v3 pool3 features (2048-d) for the standard FID, from weights the user already has.

The weights are never downloaded: pass ``weights_path`` (a torchvision Inception-v3 state dict,
``.pth`` or ``.safetensors``) or put torchvision's file in the torch hub cache
(``$TORCH_HOME/hub/checkpoints/inception_v3_google-0cc3c7bd.pth``).

Caveat: these are torchvision's Inception-v3 weights, which differ slightly from the TensorFlow
"pt_inception-2015-12-05" network that the FID papers (and clean-fid, torch-fidelity, StyleGAN's
metrics) use, and the resizing differs too. FIDs from this extractor are comparable with each other,
not with published numbers; the metric is labelled "Inception-v3 features (torchvision weights)".
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from imaginate.metrics.extractor import MissingWeightsError, to_channels_and_size

INCEPTION_FILENAME = "inception_v3_google-0cc3c7bd.pth"  # torchvision's Inception_V3_Weights.IMAGENET1K_V1
INCEPTION_URL = f"https://download.pytorch.org/models/{INCEPTION_FILENAME}"
INCEPTION_FEATURES_NAME = "Inception-v3 features (torchvision weights)"
INCEPTION_SIZE = 299


def inception_hub_path() -> Path:
    """Where the torch hub cache would hold torchvision's Inception-v3 weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILENAME


def _load_state_dict(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)  # never unpickles code


class InceptionFeatures(nn.Module):
    """torchvision's Inception-v3 without its classifier: [N, C, H, W] in [0, 1] -> [N, 2048] pool3.

    Grey images are repeated to RGB, every image is resized to 299x299 (bilinear) and mapped to
    [-1, 1], the input range of the Google weights (what torchvision's ``transform_input`` does).

    Args:
        weights_path: a local Inception-v3 state dict; None looks in the torch hub cache.
        name: the label of metrics computed on these features.

    Raises:
        MissingWeightsError: no weights file (the one-line message says which file to put where).
    """

    def __init__(self, weights_path: str | os.PathLike | None = None, name: str = INCEPTION_FEATURES_NAME) -> None:
        super().__init__()
        path = Path(weights_path).expanduser() if weights_path is not None else inception_hub_path()
        if not path.is_file():
            where = f"{path} does not exist" if weights_path is not None else f"not found at {path}"
            raise MissingWeightsError(
                f"Inception-v3 weights {where}: download {INCEPTION_URL} yourself and put it at "
                f"{inception_hub_path()} or pass its path (imaginate never downloads weights)"
            )
        from torchvision.models import inception_v3

        state_dict = _load_state_dict(path)
        with torch.device("meta"):  # no memory and no random init for weights about to be replaced
            model = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
        model.load_state_dict(state_dict, strict=True, assign=True)
        left_on_meta = [name for name, t in model.state_dict().items() if t.is_meta]
        if left_on_meta:  # cannot happen with strict=True unless torchvision adds non-persistent state
            raise RuntimeError(f"Inception-v3 state not loaded from {path}: {', '.join(left_on_meta[:5])}")
        model.AuxLogits = None  # the auxiliary classifier only runs in training mode
        model.aux_logits = False
        model.fc = nn.Identity()  # forward now ends at pool3 (+ dropout, inactive in eval mode)
        self.model = model.eval()
        self.requires_grad_(False)
        self.name = name
        self.feature_dim = 2048
        self.weights_path = str(path)

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)  # a frozen measuring instrument: never in training mode

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """[N, C, H, W] in [0, 1] (C in {1, 3}) -> [N, 2048] pool3 features."""
        device = next(self.model.parameters()).device
        x = to_channels_and_size(images.to(device=device, dtype=torch.float32), channels=3, size=INCEPTION_SIZE)
        return self.model(x * 2 - 1)  # [N, 3, 299, 299] in [-1, 1] -> [N, 2048]
