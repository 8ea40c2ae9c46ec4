"""Sequential batch back-propagation (wetectron, arXiv 2004.04725, Sec. 3.4; never released by the authors).

With ~2,000 proposals per image the ROI neck (ROI pooling, fc6 and fc7 of 4096 channels, dropout)
stores far more activations for backward than the backbone does. The heads cannot simply be run per
chunk of ROIs: the WSDDN detection stream takes a softmax over *all* ROIs, so the loss couples them.
Sequential back-propagation keeps the gradients exact while holding the neck's activations of one
chunk at a time:

(a) without grad, run the neck over chunks of ROIs and concatenate its outputs, [R, D];
(b) make those a leaf, compute the loss over all ROIs jointly and back-propagate it: the heads get
    their gradients, the leaf gets d loss / d neck_out;
(c) per chunk, recompute the neck with grad on one shared detached copy of the feature map and
    back-propagate the chunk's slice of d loss / d neck_out: the neck's parameters and the detached
    feature map accumulate their gradients;
(d) back-propagate the accumulated feature-map gradient through the backbone once.

Randomness: (c) must redraw exactly the dropout masks (and Concrete DropBlock samples) of (a). The
default CPU generator, and that of the feature map's CUDA device, are saved before each chunk in (a)
and restored before the same chunk in (c); after (c) they are put back where (b) left them, so the
call leaves the generators as ``plain_roi_backward`` does. A neck that draws from its own
``torch.Generator`` is not replayed. The neck must also be free of other forward side effects
(no BatchNorm in training mode: its running statistics would be updated twice, and its batch
statistics would depend on the chunk). Tested without autocast (AMP), on CPU; CUDA uses the same
code path with the device's generator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType

import torch
from torch import Tensor

RngState = tuple[Tensor, Tensor | None]  # (CPU generator state, CUDA generator state or None)


def _chunks(num_rois: int, chunk_size: int | None) -> list[slice]:
    if num_rois < 1:
        raise ValueError("need at least one ROI")
    if chunk_size is None:
        return [slice(0, num_rois)]
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return [slice(start, min(start + chunk_size, num_rois)) for start in range(0, num_rois, chunk_size)]


def _get_rng_state(device: torch.device) -> RngState:
    if device.type not in ("cpu", "cuda"):
        raise NotImplementedError(f"RNG replay is implemented for CPU and CUDA tensors, not {device.type}")
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_rng_state(state: RngState, device: torch.device) -> None:
    cpu_state, cuda_state = state
    torch.set_rng_state(cpu_state)
    if cuda_state is not None:
        torch.cuda.set_rng_state(cuda_state, device)


def _check_loss(loss: Tensor) -> None:
    if loss.dim() != 0:
        raise ValueError(f"head_loss must return a scalar, got shape {list(loss.shape)}")


def plain_roi_backward(feature_map: Tensor, rois: Tensor, neck: Callable[[Tensor, Tensor], Tensor],
                       head_loss: Callable[[Tensor], Tensor], chunk_size: int | None = None) -> Tensor:
    """The reference: one forward keeping every activation, one backward. Returns the detached loss.

    ``chunk_size`` only splits the neck's forward calls (None: one call over all ROIs); with the same
    chunk size as ``sequential_roi_backward`` the neck draws the same random numbers in the same order,
    so the two give the same gradients with dropout active.
    """
    neck_out = torch.cat([neck(feature_map, rois[part]) for part in _chunks(rois.shape[0], chunk_size)])
    loss = head_loss(neck_out)
    _check_loss(loss)
    loss.backward()
    return loss.detach()


def sequential_roi_backward(feature_map: Tensor, rois: Tensor, neck: Callable[[Tensor, Tensor], Tensor],
                            head_loss: Callable[[Tensor], Tensor], chunk_size: int) -> Tensor:
    """Back-propagate ``head_loss(neck(feature_map, rois))`` holding one chunk of neck activations at a time.

    Gradients accumulate into ``.grad`` exactly as ``loss.backward()`` would (the caller zeroes them).

    Args:
        feature_map: [B, C, H, W] backbone output, part of an autograd graph (or a leaf).
        rois: [R, 5] (batch index, x1, y1, x2, y2) or whatever ``neck`` takes, sliced along dim 0.
        neck: (feature_map, rois[r0:r1]) -> [r1 - r0, D]: ROI pooling, optional ROI dropout (Concrete
            DropBlock), the fc neck. Must treat each ROI independently of the others.
        head_loss: [R, D] neck outputs of all ROIs -> scalar loss (heads and losses, ROIs coupled).
            It may depend on parameters, but not on ``feature_map`` other than through its input.
        chunk_size: ROIs per neck call; the peak memory of the neck's activations scales with it.

    Returns:
        the loss, detached.
    """
    parts = _chunks(rois.shape[0], chunk_size)
    device = feature_map.device

    # (a) neck over chunks without storing activations; remember each chunk's RNG state
    chunk_rng: list[RngState] = []
    outputs = []
    with torch.no_grad():
        for part in parts:
            chunk_rng.append(_get_rng_state(device))
            outputs.append(neck(feature_map, rois[part]))
    neck_out = torch.cat(outputs).requires_grad_()  # [R, D] leaf
    del outputs

    # (b) loss over all ROIs jointly; heads get their gradients, the leaf d loss / d neck_out
    loss = head_loss(neck_out)
    _check_loss(loss)
    loss.backward()
    grad_neck_out = neck_out.grad  # [R, D]
    if grad_neck_out is None:  # the loss does not depend on the neck
        return loss.detach()
    after_heads = _get_rng_state(device)
    del neck_out

    # (c) recompute each chunk with grad, replaying its random draws, and back-propagate its slice
    feature_leaf = feature_map.detach().requires_grad_()
    with torch.enable_grad():
        for part, state in zip(parts, chunk_rng):
            _set_rng_state(state, device)
            neck(feature_leaf, rois[part]).backward(grad_neck_out[part])
    _set_rng_state(after_heads, device)

    # (d) the backbone, once
    if feature_map.requires_grad and feature_leaf.grad is not None:
        feature_map.backward(feature_leaf.grad)
    return loss.detach()


def checkpointed_neck(feature_map: Tensor, rois: Tensor, neck: Callable[[Tensor, Tensor], Tensor],
                      chunk_size: int) -> Tensor:
    """The neck outputs of all ROIs, [R, D], storing no neck activations: the in-graph form of
    ``sequential_roi_backward``, for training loops that call ``loss.backward()`` themselves (AMP
    loss scaling, gradient accumulation, DDP).

    Each chunk runs under ``torch.utils.checkpoint`` (non-reentrant, RNG state preserved): the forward
    keeps only the chunk's inputs (the shared feature map and its ROIs); the backward recomputes one
    chunk at a time with the same dropout / DropBlock draws, back-propagates that chunk's slice of the
    output gradient and accumulates the feature-map gradient, which then flows through the backbone
    once -- steps (a), (c) and (d) above, with autograd ordering them. Same neck requirements as
    ``sequential_roi_backward``.
    """
    from torch.utils.checkpoint import checkpoint

    parts = _chunks(rois.shape[0], chunk_size)
    return torch.cat([checkpoint(neck, feature_map, rois[part], use_reentrant=False, preserve_rng_state=True)
                      for part in parts])


class SavedTensorMeter:
    """Context manager measuring the bytes that autograd holds for backward: ``live_bytes``, ``peak_bytes``.

    Through ``torch.autograd.graph.saved_tensors_hooks``: each storage saved by an op while the meter is
    active counts once (by its full ``nbytes``) until every graph node saving it is freed. Tensors
    created under ``no_grad`` are never saved, so they are not counted, nor are gradients or other
    transient buffers: this measures activation memory, not the process peak.

    Args:
        exclude: tensors whose storages are not counted (e.g. the parameters, alive anyway).
    """

    def __init__(self, exclude: Iterable[Tensor] = ()) -> None:
        self._excluded = {t.untyped_storage().data_ptr() for t in exclude}
        self._holders: dict[int, list[int]] = {}  # storage pointer -> [number of holders, nbytes]
        self.live_bytes = 0
        self.peak_bytes = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, tensor: Tensor) -> object:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key in self._excluded or storage.nbytes() == 0:
            return tensor
        holder = self._holders.setdefault(key, [0, storage.nbytes()])
        if holder[0] == 0:
            self.live_bytes += holder[1]
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        holder[0] += 1
        return _SavedTensor(self, tensor, key)

    @staticmethod
    def _unpack(saved: object) -> Tensor:
        return saved.tensor if isinstance(saved, _SavedTensor) else saved

    def _release(self, key: int) -> None:
        holder = self._holders[key]
        holder[0] -= 1
        if holder[0] == 0:
            self.live_bytes -= holder[1]
            del self._holders[key]

    def __enter__(self) -> SavedTensorMeter:
        self._hooks.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._hooks.__exit__(exc_type, exc, traceback)


class _SavedTensor:
    """What the autograd graph holds instead of a saved tensor; tells the meter when it is freed."""

    def __init__(self, meter: SavedTensorMeter, tensor: Tensor, key: int) -> None:
        self.meter, self.tensor, self.key = meter, tensor, key

    def __del__(self) -> None:
        self.meter._release(self.key)
