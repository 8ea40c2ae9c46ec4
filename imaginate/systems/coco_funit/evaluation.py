"""Few-shot evaluation of COCO-FUNIT / FUNIT on unseen classes, with offline helper networks.

For each K in ``eval.shots`` and each unseen class u, ``translations_per_class`` content images of
seen classes are translated with K random example images of u (the same contents for every class
and both models, so the numbers are paired). Metrics (a flat dict of floats):

- ``pacc_k{K}``: share of translations that a species classifier trained on ALL classes (seen and
  unseen, real images) assigns to u; ``pacc_real``: its accuracy on the real unseen images.
- ``style_sensitivity_k{K}``: mean absolute pixel difference between the translations of the same
  contents into two different unseen classes, over class pairs (0: the output ignores the style).
- ``l1_gt_k{K}`` / ``psnr_gt_k{K}`` (species only): L1 and PSNR of the translation against its ground
  truth, the unseen species u drawn in the content image's pose on its background
  (``render_species_batch(u, content pose)``): the one number that rewards neither copying the
  content nor copying the style example. ``l1_fg_k{K}``: the same L1 inside the union of the ground
  truth's and the content's masks (the plain background does not dilute it).
- ``style_leak_k{K}`` (species only): IoU of the translation's predicted foreground with the style
  examples' masks (mean over the K examples): high when the output copies the example's pose (the
  failure the paper's content-conditioned code addresses); ``style_leak_ideal_k{K}`` is the same IoU
  for the ground-truth output (what an ideal translator scores by chance overlap).
- ``style_sensitivity_ideal_k{K}``: the style sensitivity of the ground truths.
- ``foreground_ratio_k{K}`` (species only, with the mask net): creature pixels the mask net finds in
  the translations over those of the ideal outputs (1 = as much creature as the truth; near 0 = the
  output is background only).
- ``dead_style_code`` / ``collapsed`` (``evaluate_system``): share of style-code dimensions that are
  zero for every evaluation translation, and 1.0 when the run has collapsed (dead code, style
  sensitivity below a tenth of the ideal's, or a foreground ratio under ``EMPTY_OUTPUT``): such a run
  is a failure, not a result.
- ``mfid_k{K}`` (only with ``eval.mfid``): per-unseen-class FID between the translations and the real images of u, averaged
  over classes, in the features of a pluggable extractor (default: the classifier's penultimate
  layer, labelled ``FEATURES`` = "species-classifier features"; only comparable within that space and
  at the same sample counts: small counts bias FID upwards).
- species only (content known): ``iou_content_k{K}``: IoU between the content image's true mask and
  the translation's foreground as predicted by a small segmentation net trained on species images;
  ``iou_target_k{K}``: IoU of that prediction with the true mask of the ideal output (u rendered with
  the content's pose: ``render_species(u, content)``); ``iou_real``: the mask net's IoU on real content
  images (its own accuracy).
- species only: the same PAcc and IoUs stratified by the facing difference between the content pose
  and the style examples' poses (mean over the K examples), in ``POSE_BINS``:
  ``pacc_k{K}_pose_lt30``, ``iou_content_k{K}_pose_30to90``, ..., with ``count_k{K}_pose_*``; an
  empty bin gives NaN. The paper's claim: COCO-FUNIT keeps the content pose better than FUNIT when
  the poses differ strongly (high ``iou_content`` in the ``gt90`` bin).

The helper networks (``helpers.py``) train deterministically (fixed seeds) and are cached in memory and,
with ``eval.cache_dir``, on disk (state dicts, loaded with ``weights_only=True``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from imaginate.data import (
    SPLIT,
    ClassSubset,
    DataError,
    SpeciesDataset,
    facing_difference,
    few_shot_folder,
    load_species,
    render_species_batch,
)
from imaginate.metrics import FeatureExtractor, extract_stats, fid_from_stats
from imaginate.systems.coco_funit.helpers import (
    ClassifierFeatureExtractor,
    MaskNet,
    SpeciesClassifier,
    cached_helper,
    train_mask_net,
    train_species_classifier,
)

if TYPE_CHECKING:  # the system imports this module lazily; no import cycle at run time
    from imaginate.systems.coco_funit.system import COCOFUNITSystem

POSE_BINS = (("lt30", 0.0, 30.0), ("30to90", 30.0, 90.0), ("gt90", 90.0, 180.001))  # degrees, [low, high)
HELPER_SEED, CONTENT_SEED, STYLE_SEED = 101, 202, 303  # offsets from data.seed: fresh draws, not training's
TARGETS = ("unseen", "seen")  # eval.targets: whose examples the translations take their style from
SEEN_TARGETS = SPLIT.seen[::4][:5]  # eval.targets=seen: five seen species, held-out (freshly drawn) examples
EMPTY_OUTPUT = 0.3  # a run whose translations hold under 30 % of the true creature area draws (almost) none

# ------------------------------------------------------------------ evaluation data


@dataclass(eq=False)
class FewShotEvalData:
    """What the few-shot metrics need; masks and poses only for species (else None).

    ``helper_*`` train the helper nets (all classes, ids in [0, num_classes)); ``content_*`` are seen
    classes' images to translate; ``style_*`` the unseen classes' images (style examples and the mFID
    reference), ``style_labels`` in the same id space.
    """

    name: str  # identifies the data in cache keys
    num_classes: int
    unseen: list[int]
    helper_images: Tensor  # [N, C, H, W] in [0, 1]
    helper_labels: Tensor  # [N]
    content_images: Tensor  # [M, C, H, W]
    style_images: Tensor  # [U * R, C, H, W]
    style_labels: Tensor  # [U * R]
    helper_masks: Tensor | None = None  # [N, H, W] bool
    content_masks: Tensor | None = None  # [M, H, W] bool
    content_poses: Tensor | None = None  # [M, 5]
    content_backgrounds: Tensor | None = None  # [M] int64
    style_poses: Tensor | None = None  # [U * R, 5]
    style_masks: Tensor | None = None  # [U * R, H, W] bool
    plain_background: bool = False  # species drawn on a uniform grey
    variant: str = "full"  # the species appearance set (imaginate.data.species.VARIANTS)


@functools.lru_cache(maxsize=4)
def species_eval_data(size: int, seed: int, contents: int, real_per_class: int, helper_per_class: int,
                      plain_background: bool = False, variant: str = "full", targets: str = "unseen") -> FewShotEvalData:
    """Species evaluation data: fresh contents of seen species, the target species' images, all species for helpers.

    ``targets="unseen"``: the style examples are the unseen species' (few-shot translation proper);
    ``"seen"``: freshly drawn examples of five seen species (``SEEN_TARGETS``), images the model never
    trained on of species it did: the gap between the two separates "has not learned to translate"
    from "does not generalise to new species". The field ``unseen`` then holds those seen ids.
    """
    if targets not in TARGETS:
        raise ValueError(f"eval.targets: must be one of {', '.join(TARGETS)}, got {targets!r}")
    plain = plain_background
    helper = load_species("all", helper_per_class, size, seed + HELPER_SEED, plain, variant).prerender()  # labels = ids
    per_species = math.ceil(contents / len(SPLIT.seen))
    content = SpeciesDataset(SPLIT.seen, per_species, size, seed + CONTENT_SEED, plain, variant).prerender()
    order = torch.randperm(len(content.labels), generator=torch.Generator().manual_seed(seed))[:contents]
    target_ids = SPLIT.unseen if targets == "unseen" else SEEN_TARGETS
    style = SpeciesDataset(target_ids, real_per_class, size, seed + STYLE_SEED, plain, variant).prerender()
    suffix = ("-plain" if plain else "") + ("" if variant == "full" else f"-{variant}")
    return FewShotEvalData(
        name=f"species-{size}-{seed}-{helper_per_class}{suffix}", variant=variant,
        num_classes=len(helper.class_names), plain_background=plain, style_masks=style.masks,
        unseen=list(target_ids), helper_images=helper.images, helper_labels=helper.labels,
        content_images=content.images[order], style_images=style.images, style_labels=style.species,
        helper_masks=helper.masks, content_masks=content.masks[order], content_poses=content.poses[order],
        content_backgrounds=content.background_seeds[order], style_poses=style.poses,
    )  # fmt: skip


def folder_eval_data(root: str, split_file: str, size: int, channels: int, seed: int, contents: int,
                     real_per_class: int, helper_per_class: int) -> FewShotEvalData:
    """Image-folder evaluation data: seen classes get ids [0, S), unseen [S, S + U); at most the first
    ``*_per_class`` images of each class are read."""
    seen, unseen = few_shot_folder(root, split_file, size, channels)

    def first(subset: ClassSubset, per_class: int) -> tuple[Tensor, Tensor]:
        labels = subset.labels
        rows = torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in range(subset.num_classes)])
        return torch.stack([subset[int(i)][0] for i in rows]), labels[rows]

    seen_images, seen_labels = first(seen, helper_per_class)
    style_images, style_labels = first(unseen, real_per_class)
    style_labels = style_labels + seen.num_classes
    order = torch.randperm(seen_images.shape[0], generator=torch.Generator().manual_seed(seed))[:contents]
    helper_unseen = torch.cat([torch.nonzero(style_labels == c).flatten()[:helper_per_class]
                               for c in range(seen.num_classes, seen.num_classes + unseen.num_classes)])
    return FewShotEvalData(
        name=f"folder-{root}-{split_file}-{size}-{helper_per_class}-{real_per_class}",
        num_classes=seen.num_classes + unseen.num_classes,
        unseen=list(range(seen.num_classes, seen.num_classes + unseen.num_classes)),
        helper_images=torch.cat([seen_images, style_images[helper_unseen]]),
        helper_labels=torch.cat([seen_labels, style_labels[helper_unseen]]),
        content_images=seen_images[order], style_images=style_images, style_labels=style_labels,
    )  # fmt: skip


# ------------------------------------------------------------------ metrics


def mask_iou(predicted: Tensor, target: Tensor) -> Tensor:
    """Per-image IoU ``[N]`` of bool masks ``[N, H, W]`` (1 where both are empty)."""
    inter = (predicted & target).flatten(1).sum(1).double()
    union = (predicted | target).flatten(1).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


@torch.no_grad()
def _batched(fn: Callable[[Tensor], Tensor], images: Tensor, batch_size: int, device: torch.device) -> Tensor:
    return torch.cat([fn(chunk.to(device)).cpu() for chunk in images.split(batch_size)])


def psnr(images: Tensor, targets: Tensor) -> Tensor:
    """Per-image PSNR ``[N]`` in dB of images in [0, 1] (``[N, C, H, W]``), capped at 100 dB (identical)."""
    mse = (images - targets).double().pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).float()


def few_shot_metrics(translate: Callable[[Tensor, Tensor], Tensor], data: FewShotEvalData,
                     classifier: SpeciesClassifier, shots: list[int], per_class: int,
                     extractor: FeatureExtractor | None = None, mask_net: MaskNet | None = None,
                     batch_size: int = 50, seed: int = 0, mfid: bool = True) -> dict[str, float]:
    """The metrics of the module docstring.

    Args:
        translate: ``(content [N, C, H, W], style [N, K, C, H, W])`` in [0, 1] -> ``[N, C, H, W]`` in [0, 1].
        data: the evaluation images.
        classifier: trained on all classes (``data.num_classes``), for PAcc.
        shots: the K values.
        per_class: translations per unseen class and K (contents cycle through ``data.content_images``).
        extractor: mFID features (default: the classifier's penultimate layer, ``FEATURES``).
        mask_net: the foreground segmenter (IoU metrics need it and ``data.content_masks``).
        batch_size: images per forward pass of the helper nets.
        seed: seeds the choice of style examples.
        mfid: compute ``mfid_k{K}`` (unstable at small sample counts: see the module docstring).
    """
    device = next(classifier.parameters()).device
    extractor = extractor if extractor is not None else ClassifierFeatureExtractor(classifier)
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, float] = {}
    predicted = _batched(classifier, data.style_images, batch_size, device).argmax(1)
    out["pacc_real"] = float((predicted == data.style_labels).double().mean())
    with_masks = mask_net is not None and data.content_masks is not None
    if with_masks:
        assert mask_net is not None and data.content_masks is not None
        real_masks = _batched(mask_net, data.content_images, batch_size, device)[:, 0] > 0
        out["iou_real"] = float(mask_iou(real_masks, data.content_masks).mean())
    contents = torch.arange(per_class) % data.content_images.shape[0]  # [n]
    known = data.content_poses is not None and data.content_backgrounds is not None
    for k in shots:
        correct, fids, pose_diff, fakes, ideals = [], [], [], [], []
        drawn = [0.0, 0.0]  # foreground pixels predicted in the translations, true in the ideal outputs
        per_image: dict[str, list[Tensor]] = {}
        for u in data.unseen:
            pool = torch.nonzero(data.style_labels == u).flatten()
            if pool.numel() < max(k, 2):
                raise DataError(f"unseen class {u} has {pool.numel()} evaluation images; K={k} needs at least {max(k, 2)}")
            picks = torch.stack([pool[torch.randperm(pool.numel(), generator=gen)[:k]] for _ in range(per_class)])
            fake = translate(data.content_images[contents], data.style_images[picks])  # [n, C, H, W]
            fakes.append(fake)
            correct.append(_batched(classifier, fake, batch_size, device).argmax(1) == u)
            if mfid:
                real_stats = extract_stats(data.style_images[pool], extractor, batch_size, max_kept=0, device=device)
                fake_stats = extract_stats(fake, extractor, batch_size, max_kept=0, device=device)
                fids.append(fid_from_stats(real_stats, fake_stats))
            found: dict[str, Tensor] = {}
            if known:  # the ground truth: u drawn in the content's pose on the content's background
                assert data.content_poses is not None and data.content_backgrounds is not None
                ideal, ideal_mask = render_species_batch([u] * per_class, data.content_poses[contents],
                                                         data.content_backgrounds[contents], fake.shape[-1],
                                                         data.plain_background, data.variant)
                ideals.append(ideal)
                found["l1_gt"] = (fake - ideal).abs().flatten(1).mean(1)
                # the same inside the creatures (ideal or content mask): the background does not dilute it
                region = ideal_mask if data.content_masks is None else ideal_mask | data.content_masks[contents]
                weight = region[:, None].float()  # [n, 1, H, W]
                found["l1_fg"] = ((fake - ideal).abs() * weight).flatten(1).sum(1) / (
                    weight.flatten(1).sum(1) * fake.shape[1]).clamp_min(1)
                found["psnr_gt"] = psnr(fake, ideal)
                if data.style_masks is not None:  # how much the ideal output overlaps the examples anyway
                    found["style_leak_ideal"] = torch.stack(
                        [mask_iou(ideal_mask, data.style_masks[picks[:, j]]) for j in range(k)]).mean(0)
            if with_masks and known:
                assert mask_net is not None and data.content_masks is not None
                foreground = _batched(mask_net, fake, batch_size, device)[:, 0] > 0  # [n, H, W]
                found["iou_content"] = mask_iou(foreground, data.content_masks[contents])
                found["iou_target"] = mask_iou(foreground, ideal_mask)
                drawn[0] += float(foreground.sum())
                drawn[1] += float(ideal_mask.sum())
                if data.style_masks is not None:  # the output's shape copied from the style examples
                    found["style_leak"] = torch.stack(
                        [mask_iou(foreground, data.style_masks[picks[:, j]]) for j in range(k)]).mean(0)
            for name, values in found.items():
                per_image.setdefault(name, []).append(values.double())
            if data.content_poses is not None and data.style_poses is not None:
                diff = facing_difference(data.content_poses[contents][:, None], data.style_poses[picks])  # [n, K]
                pose_diff.append(diff.mean(1))
        hits = torch.cat(correct).double()
        out[f"pacc_k{k}"] = float(hits.mean())
        if mfid:
            out[f"mfid_k{k}"] = sum(fids) / len(fids)
        pairs = [(a, b) for a in range(len(fakes)) for b in range(a + 1, len(fakes))]
        out[f"style_sensitivity_k{k}"] = (sum(float((fakes[a] - fakes[b]).abs().mean()) for a, b in pairs)
                                          / len(pairs)) if pairs else math.nan
        if ideals and pairs:
            out[f"style_sensitivity_ideal_k{k}"] = sum(float((ideals[a] - ideals[b]).abs().mean())
                                                       for a, b in pairs) / len(pairs)
        if drawn[1] > 0:
            out[f"foreground_ratio_k{k}"] = drawn[0] / drawn[1]
        ious = {name: torch.cat(values) for name, values in per_image.items()}
        for name, values in ious.items():
            out[f"{name}_k{k}"] = float(values.mean())
        if pose_diff:
            diffs = torch.cat(pose_diff)
            for label, low, high in POSE_BINS:
                members = (diffs >= low) & (diffs < high)
                out[f"count_k{k}_pose_{label}"] = float(members.sum())
                for name, values in {"pacc": hits, **ious}.items():
                    out[f"{name}_k{k}_pose_{label}"] = float(values[members].mean()) if members.any() else math.nan
    return out


def helper_networks(data: FewShotEvalData, classifier_steps: int, mask_net_steps: int, seed: int,
                    device: torch.device, cache_dir: str = "") -> tuple[SpeciesClassifier, MaskNet | None]:
    """The species classifier (all classes) and, when the data have masks, the mask net; cached."""
    common = {"data": data.name, "seed": seed, "device": str(device), "images": int(data.helper_images.shape[0])}
    classifier = cached_helper(
        "species_classifier", {**common, "steps": classifier_steps, "classes": data.num_classes},
        lambda: train_species_classifier(data.helper_images, data.helper_labels, data.num_classes,
                                         classifier_steps, seed=seed, device=device),
        lambda: SpeciesClassifier(data.num_classes, data.helper_images.shape[1]), cache_dir)
    mask_net = None
    if data.helper_masks is not None:
        masks = data.helper_masks
        mask_net = cached_helper(
            "mask_net", {**common, "steps": mask_net_steps},
            lambda: train_mask_net(data.helper_images, masks, mask_net_steps, seed=seed, device=device),
            lambda: MaskNet(data.helper_images.shape[1]), cache_dir)
    return classifier, mask_net  # type: ignore[return-value]


def system_eval_data(system: COCOFUNITSystem) -> FewShotEvalData:
    """The evaluation data of a system's config (species: cached in memory)."""
    cfg, m = system.cfg, system.cfg.model
    e = cfg.eval
    if cfg.data.name == "species":
        return species_eval_data(m.image_size, cfg.data.seed, e.translations_per_class, e.real_per_class,
                                 e.helper_images_per_class, cfg.data.plain_background, cfg.data.variant, e.targets)
    assert cfg.data.root is not None and cfg.data.split_file is not None  # checked by the config
    return folder_eval_data(cfg.data.root, cfg.data.split_file, m.image_size, m.image_channels, cfg.data.seed,
                            e.translations_per_class, e.real_per_class, e.helper_images_per_class)


def evaluate_system(system: COCOFUNITSystem, extractor: FeatureExtractor | None = None) -> dict[str, float]:
    """Few-shot metrics of a system's evaluation generator (see the module docstring).

    Args:
        system: the trained system (its ``cfg.eval`` sets K, sample counts and helper training).
        extractor: mFID features (default: the species classifier's penultimate layer).
    """
    cfg = system.cfg
    data = system_eval_data(system)
    classifier, mask_net = helper_networks(data, cfg.eval.classifier_steps, cfg.eval.mask_net_steps,
                                           cfg.data.seed, system.ctx.device, cfg.eval.cache_dir)
    out = few_shot_metrics(
        lambda c, s: system.translate(c, s, cfg.eval.batch_size), data, classifier, list(cfg.eval.shots),
        cfg.eval.translations_per_class, extractor, mask_net, cfg.eval.batch_size, seed=cfg.train.seed,
        mfid=cfg.eval.mfid,
    )
    out["dead_style_code"] = eval_dead_share(system, data)
    out["collapsed"] = float(is_collapsed(out))
    return out


@torch.no_grad()
def eval_dead_share(system: COCOFUNITSystem, data: FewShotEvalData, count: int = 64) -> float:
    """``dead_share`` of the evaluation generator's style codes for up to ``count`` contents, each with
    a different real unseen-class example (cycling through them)."""
    from imaginate.systems.coco_funit.model import dead_share

    net, device = system.eval_generator, system.ctx.device
    n = min(count, data.content_images.shape[0], data.style_images.shape[0])
    n = max(n, 2)
    content = data.content_images[torch.arange(n) % data.content_images.shape[0]].to(device) * 2 - 1
    style = data.style_images[torch.arange(n) % data.style_images.shape[0]].to(device) * 2 - 1
    codes = net.style_code(net.encode_content(content), style)  # [n, S]
    return dead_share(codes.float().cpu())


def is_collapsed(metrics: dict[str, float], floor: float = 0.1, empty: float = EMPTY_OUTPUT) -> bool:
    """A failed run: its output ignores the style (every style-code dimension dead, or the smallest K's
    style sensitivity under ``floor`` times the ground truths', when that is known, else under 1e-4), or
    it draws (almost) no creature (the smallest K's ``foreground_ratio`` under ``empty``)."""
    if metrics.get("dead_style_code", 0.0) >= 1.0:
        return True
    ks = sorted(int(key[len("style_sensitivity_k"):]) for key in metrics
                if key.startswith("style_sensitivity_k") and key[len("style_sensitivity_k"):].isdigit())
    if not ks:
        return False
    ratio = metrics.get(f"foreground_ratio_k{ks[0]}")
    if ratio is not None and ratio < empty:
        return True
    value = metrics[f"style_sensitivity_k{ks[0]}"]
    ideal = metrics.get(f"style_sensitivity_ideal_k{ks[0]}")
    return bool(value < (floor * ideal if ideal is not None and ideal == ideal else 1e-4))


def sample_pairs(system: COCOFUNITSystem, rows: int = 4, columns: int = 5) -> tuple[Tensor, Tensor]:
    """Content images of ``rows`` seen classes and one style image of each of up to ``columns`` unseen
    classes, ``[R, C, H, W]`` and ``[S, C, H, W]`` in [0, 1], for the sample grid."""
    cfg, m = system.cfg, system.cfg.model
    if cfg.data.name == "species":
        seen = [SPLIT.seen[round(i * (len(SPLIT.seen) - 1) / max(rows - 1, 1))] for i in range(rows)]
        plain, variant = cfg.data.plain_background, cfg.data.variant
        content = SpeciesDataset(seen, 1, m.image_size, cfg.data.seed + CONTENT_SEED, plain, variant).prerender().images
        style = SpeciesDataset(SPLIT.unseen[:columns], 1, m.image_size, cfg.data.seed + STYLE_SEED, plain,
                               variant).prerender()
        return content, style.images
    assert cfg.data.root is not None and cfg.data.split_file is not None  # checked by the config
    seen_set, unseen_set = few_shot_folder(cfg.data.root, cfg.data.split_file, m.image_size, m.image_channels)

    def first_of_classes(subset: ClassSubset, count: int) -> Tensor:
        labels = subset.labels
        firsts = [int(torch.nonzero(labels == c).flatten()[0]) for c in range(min(count, subset.num_classes))]
        return torch.stack([subset[i][0] for i in firsts])

    return first_of_classes(seen_set, rows), first_of_classes(unseen_set, columns)
