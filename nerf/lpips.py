"""LPIPS (Zhang et al. 2018, the AlexNet variant, v0.1) from weight files on disk: nothing is downloaded.

LPIPS needs two files:
- the AlexNet backbone, torchvision's `alexnet-owt-7be5be79.pth` (keys `features.{0,3,6,8,10}.{weight,bias}`);
  `--lpips_backbone PATH`, else torch's hub cache (`torch.hub.get_dir()/checkpoints/`) when it already holds it;
- the linear heads, the `lpips` package's `weights/v0.1/alex.pth` (keys `lin{0..4}.model.1.weight`);
  `--lpips_heads PATH`, else the copy inside an installed `lpips` package (found without importing it, so
  torchvision is not needed).
The network is written here in a few lines of torch (the method itself): the scaling layer, AlexNet's five conv
stages tapped after each ReLU, unit-normalised channels, squared differences weighted by the heads, averaged over
space and summed over the stages.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BACKBONE_FILE = "alexnet-owt-7be5be79.pth"
CONVS = [(3, 64, 11, 4, 2), (64, 192, 5, 1, 2), (192, 384, 3, 1, 1), (384, 256, 3, 1, 1), (256, 256, 3, 1, 1)]
TORCHVISION_INDEX = (0, 3, 6, 8, 10)  # where these convs sit in torchvision's alexnet.features
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    """LPIPS distance between images in [-1, 1]: (x [B,3,H,W], y [B,3,H,W]) -> [B]."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, s, p) for i, o, k, s, p in CONVS)
        self.heads = nn.ModuleList(nn.Conv2d(o, 1, 1, bias=False) for _, o, *_ in CONVS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def stages(self, x: Tensor) -> list[Tensor]:
        """The five ReLU outputs of AlexNet (max-pooling before stages 2 and 3, as in torchvision)."""
        h, out = (x - self.shift) / self.scale, []
        for k, conv in enumerate(self.convs):
            if k in (1, 2):
                h = F.max_pool2d(h, 3, 2)
            h = F.relu(conv(h))
            out.append(h)
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        total = x.new_zeros(x.shape[0])
        for fx, fy, head in zip(self.stages(x), self.stages(y), self.heads):
            nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + head((nx - ny) ** 2).mean((1, 2, 3))
        return total


def _load_state(path: Path, keys: list[str], shapes: list[tuple], what: str) -> dict[str, Tensor]:
    """A state dict from `path` with these keys and shapes; ValueError naming the file otherwise."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} weights not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, truncated, pickled code, ...
        raise ValueError(f"{path}: not a torch weights file ({type(e).__name__})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict of {what} weights")
    for key, shape in zip(keys, shapes):
        if key not in state:
            raise ValueError(f"{path}: not {what} weights (no {key})")
        if tuple(state[key].shape) != shape:
            raise ValueError(f"{path}: {key} has shape {list(state[key].shape)}, expected {list(shape)} ({what})")
    return state


def load_lpips(backbone: str | Path | None = None, heads: str | Path | None = None) -> tuple[LPIPS | None, str]:
    """LPIPS from the given files or the offline defaults -> (network or None, one line saying which files were
    used or why LPIPS is skipped). A file the user gave that is missing or wrong raises (FileNotFoundError /
    ValueError naming it); missing defaults only skip."""
    b_path = Path(backbone) if backbone else Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILE
    h_path = Path(heads) if heads else _package_heads()
    b_keys = [f"features.{i}.{p}" for i in TORCHVISION_INDEX for p in ("weight", "bias")]
    b_shapes = [s for i, o, k, *_ in CONVS for s in ((o, i, k, k), (o,))]
    h_keys = [f"lin{k}.model.1.weight" for k in range(len(CONVS))]
    h_shapes = [(1, o, 1, 1) for _, o, *_ in CONVS]
    # the files the user gave are checked first: a wrong one is an error, a missing default only a skip
    b_state = _load_state(b_path, b_keys, b_shapes, "AlexNet backbone") if backbone or b_path.is_file() else None
    h_state = _load_state(h_path, h_keys, h_shapes, "LPIPS heads") if heads or h_path is not None else None
    if b_state is None:
        return None, f"skipped: no AlexNet weights (give --lpips_backbone {BACKBONE_FILE}; not in {b_path.parent})"
    if h_state is None:
        return None, "skipped: no LPIPS heads (give --lpips_heads alex.pth from the lpips package's weights/v0.1)"
    net = LPIPS()
    with torch.no_grad():
        for k, conv in enumerate(net.convs):
            conv.weight.copy_(b_state[b_keys[2 * k]])
            conv.bias.copy_(b_state[b_keys[2 * k + 1]])
            net.heads[k].weight.copy_(h_state[h_keys[k]])
    return net.eval(), f"LPIPS (alex, v0.1): backbone {b_path}, heads {h_path}"


def _package_heads() -> Path | None:
    """weights/v0.1/alex.pth inside an installed lpips package, or None."""
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / "alex.pth"
    return path if path.is_file() else None
