"""Export of a model trained by LNSMadam in native mode as packed LNS weights (safetensors), and its loader.

File layout: every parameter stored natively is its packed store (uint8 for B <= 8, int16 above:
:mod:`imaginate.numerics.lns_pack`) under the parameter's name; every other entry of the model's
``state_dict`` (parameters of other groups, buffers such as batch-norm statistics) is saved as it
is. The safetensors metadata holds ``"format": "imaginate-lns/1"`` and ``"lns"``: a JSON object
``{name: {"bits": B, "gamma": gamma, "scale": float, "dtype": "float32"}}`` for the packed entries.
Decoding multiplies nothing out: each value is the decode table's entry for its bit pattern, the
same table the optimizer writes the parameters from, so a reloaded model computes the same outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from imaginate.numerics.lns import LNSFormat
from imaginate.numerics.lns_pack import decode_packed, decode_table, packed_dtype

FORMAT = "imaginate-lns/1"
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def export_lns_safetensors(model: nn.Module, optimizer: torch.optim.Optimizer, path: str | Path) -> dict[str, int]:
    """Write ``model``'s weights with the natively stored ones packed; returns bytes by kind.

    Args:
        model: the trained model (its ``state_dict`` names the entries).
        optimizer: an :class:`~imaginate.optim.LNSMadam` whose native groups hold the store.
        path: the ``.safetensors`` file to write.

    Returns:
        ``{"packed": bytes of packed weights, "float": bytes of everything else}``.
    """
    from safetensors.torch import save_file

    names = {id(p): name for name, p in model.named_parameters()}
    tensors: dict[str, Tensor] = {}
    lns: dict[str, dict] = {}
    for group in optimizer.param_groups:
        if group.get("mode") != "native":
            continue
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            if "packed" not in state or id(p) not in names:
                continue
            name = names[id(p)]
            tensors[name] = state["packed"].detach().cpu().contiguous()
            lns[name] = {"bits": group["bits"], "gamma": group["gamma"], "scale": float(state["scale"]),
                         "dtype": str(p.dtype).removeprefix("torch.")}
    for name, value in model.state_dict().items():
        if name not in tensors:
            tensors[name] = value.detach().cpu().contiguous()
    save_file(tensors, str(path), metadata={"format": FORMAT, "lns": json.dumps(lns)})
    packed = sum(t.numel() * t.element_size() for n, t in tensors.items() if n in lns)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    return {"packed": packed, "float": total - packed}


def load_lns_safetensors(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """Read a file of :func:`export_lns_safetensors` and decode it into a plain ``state_dict``.

    Args:
        path: the ``.safetensors`` file.
        device: where the decoded tensors go.

    Raises:
        FileNotFoundError: no such file. ValueError: not an exported LNS file, or a bad entry (named).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (an LNS export written by export_lns_safetensors)")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{path}: metadata 'format' is {metadata.get('format')!r}, expected {FORMAT!r}")
        lns = json.loads(metadata.get("lns", "{}"))
        state: dict[str, Tensor] = {}
        for name in f.keys():
            tensor = f.get_tensor(name)
            if name in lns:
                spec = lns[name]
                fmt = LNSFormat(bits=spec["bits"], gamma=spec["gamma"])
                if tensor.dtype != packed_dtype(fmt):
                    raise ValueError(f"{path}: {name} is {tensor.dtype}, expected {packed_dtype(fmt)} for {fmt.bits} bits")
                dtype = _DTYPES[spec["dtype"]]
                compute = torch.promote_types(dtype, torch.float32)
                table = decode_table(fmt, torch.tensor(spec["scale"], dtype=compute), dtype)
                tensor = decode_packed(tensor, table)
            state[name] = tensor.to(device)
    return state


def load_lns_into(model: nn.Module, path: str | Path) -> nn.Module:
    """Decode an LNS export into ``model`` (strict: every entry must match); returns ``model``."""
    device = next((t.device for t in model.state_dict().values()), torch.device("cpu"))
    model.load_state_dict(load_lns_safetensors(path, device))
    return model
