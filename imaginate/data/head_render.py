"""Ray casting of the procedural heads of :mod:`imaginate.data.heads` (pure PyTorch, batched).

Surfaces are axis-aligned ellipsoids in one of two frames: the head's own frame (skull, jaw, nose,
eyes, ears, hair shell, long hair, earrings), which the pose rotates about the skull's centre and
the translation moves, and the body's frame (neck, shoulders), which only the translation moves.
Glasses are frames drawn on a plane in the head's frame. For every ray the nearest entry point wins;
the hair shell only counts above the hairline. Colour is the material's, modified by features
painted by position (brows, lips and mouth opening, teeth, nostrils, blush, iris, pupil, eyelids),
lit by one directional light plus ambient. Returned colour is premultiplied by coverage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from imaginate.data.heads import HeadIdentity

CAMERA_DISTANCE = 6.0  # the pinhole sits at (0, CAMERA_HEIGHT, CAMERA_DISTANCE) looking down -z
CAMERA_HEIGHT = -0.25
TAN_HALF_FOV = 0.28  # the image's half-side covers 1.68 head units at the head's depth
LIGHT = np.array([-0.45, 0.55, 0.75]) / np.linalg.norm([-0.45, 0.55, 0.75])
SKULL, JAW, NOSE, EYE_L, EYE_R, EAR_L, EAR_R, HAIR, HAIR_BACK, RING_L, RING_R, NECK, TORSO = range(13)
NUM_HEAD_PRIMS = 11  # the first 11 live in the head's frame, the rest in the body's
SKIN, HAIR_M, EYE_WHITE, GOLD, SHIRT = range(5)
_MATERIAL = torch.tensor([SKIN, SKIN, SKIN, EYE_WHITE, EYE_WHITE, SKIN, SKIN, HAIR_M, HAIR_M, GOLD, GOLD, SKIN, SHIRT])
_MAX_RAYS_PER_CHUNK = 1 << 17


def _float_tensor(value: Tensor | float) -> Tensor:
    value = torch.as_tensor(value)
    return value if value.dtype.is_floating_point else value.float()


def rotation_matrix_world(yaw: Tensor, pitch: Tensor, roll: Tensor) -> Tensor:
    """``[B, 3, 3]`` head-to-camera rotation in the renderer's frame (x right, y up, z toward the camera).

    R = Rz(roll) @ Ry(yaw) @ Rx(pitch), angles in degrees; the nose (0, 0, 1) goes to
    (sin yaw cos pitch, -sin pitch, cos yaw cos pitch) at zero roll.
    """
    y, p, r = (_float_tensor(a) * (math.pi / 180.0) for a in (yaw, pitch, roll))
    y, p, r = torch.broadcast_tensors(y.reshape(-1), p.reshape(-1), r.reshape(-1))
    one, zero = torch.ones_like(y), torch.zeros_like(y)
    rx = torch.stack([one, zero, zero, zero, p.cos(), -p.sin(), zero, p.sin(), p.cos()], -1).reshape(-1, 3, 3)
    ry = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], -1).reshape(-1, 3, 3)
    rz = torch.stack([r.cos(), -r.sin(), zero, r.sin(), r.cos(), zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return rz @ ry @ rx


def _layout(identity: HeadIdentity, jaw: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Centres ``[13, 3]``, half-axes ``[13, 3]``, enabled ``[13]`` and the feature anchors of one head."""
    sx, sy, sz = identity.skull
    ex, ey, er = identity.eye_spacing, identity.eye_height, identity.eye_radius

    def skull_z(x: float, y: float) -> float:  # the front surface of the skull at (x, y)
        return sz * math.sqrt(max(1e-3, 1 - (x / sx) ** 2 - (y / sy) ** 2))

    eye_z = skull_z(ex, ey) - 0.35 * er
    nose_y = ey - identity.nose_length * 0.8
    centres = np.array([
        (0, 0, 0), (0, -0.42 - 0.10 * jaw, 0.10), (0, nose_y, skull_z(0, nose_y) + 0.02),
        (ex, ey, eye_z), (-ex, ey, eye_z), (sx - 0.03, ey - 0.06, -0.05), (-(sx - 0.03), ey - 0.06, -0.05),
        (0, 0.05, -0.02), (0, -0.40, -0.32), (sx - 0.01, ey - 0.28, -0.02), (-(sx - 0.01), ey - 0.28, -0.02),
        (0, -1.0, -0.12), (0, -1.95, -0.3)], dtype=np.float64)
    radii = np.array([
        (sx, sy, sz), (identity.jaw_width, 0.52, sz * 0.74), (identity.nose_width, identity.nose_length, 0.17),
        (er, er, er), (er, er, er), (0.07, 0.17, 0.11), (0.07, 0.17, 0.11),
        (sx * 1.08, sy * 1.05, sz * 1.10), (sx * 1.12, 0.95, sz * 0.75), (0.045,) * 3, (0.045,) * 3,
        (0.34, 0.55, 0.34), (1.35, 0.75, 0.6)], dtype=np.float64)
    hairless = identity.hairline_front > 1.0
    enabled = np.ones(13, dtype=bool)
    enabled[HAIR] = not hairless
    enabled[HAIR_BACK] = identity.long_hair
    enabled[[RING_L, RING_R]] = identity.earrings
    anchors = {"side_hairline": 1.5 if hairless else 0.22, "glasses_z": eye_z + er + 0.10}
    return centres, radii, enabled, anchors


def _ray_directions(rays: int) -> Tensor:
    """``[rays * rays, 3]`` unit directions of a square pinhole camera (row-major, row 0 at the top)."""
    centres = (torch.arange(rays, dtype=torch.float32) + 0.5) / rays * 2 - 1
    v, u = torch.meshgrid(-centres, centres, indexing="ij")
    directions = torch.stack([u * TAN_HALF_FOV, v * TAN_HALF_FOV, -torch.ones_like(u)], -1).reshape(-1, 3)
    return directions / directions.norm(dim=-1, keepdim=True)


def _ellipsoid_hits(origin: Tensor, direction: Tensor, centre: Tensor, radii: Tensor) -> tuple[Tensor, Tensor]:
    """Entry and exit distances ``[B, N, P]`` (inf where missed) of rays ``origin [B, 3]``, ``direction [B, P, 3]``."""
    o = (origin[:, None, :] - centre) / radii  # [B, N, 3] in the unit-sphere frame
    d = direction[:, None, :, :] / radii[:, :, None, :]  # [B, N, P, 3]
    a = (d * d).sum(-1)
    b = (o[:, :, None, :] * d).sum(-1)
    c = (o * o).sum(-1)[:, :, None] - 1
    disc = b * b - a * c
    root = disc.clamp_min(0).sqrt()
    entry, exit_ = (-b - root) / a, (-b + root) / a
    missed = (disc <= 0) | (entry <= 0)
    inf = torch.full_like(entry, math.inf)
    return torch.where(missed, inf, entry), torch.where(missed, inf, exit_)


def _smoothstep(x: Tensor) -> Tensor:
    x = x.clamp(0, 1)
    return x * x * (3 - 2 * x)


def render_primitives(identities: Sequence[HeadIdentity], yaw: Tensor, pitch: Tensor, roll: Tensor,
                      translation: Tensor, expression: Tensor, rays: int) -> tuple[Tensor, Tensor]:
    """Premultiplied colour ``[B, 3, rays, rays]`` and coverage ``[B, 1, rays, rays]`` of B heads."""
    directions = _ray_directions(rays)  # [P, 3]
    chunk = max(1, _MAX_RAYS_PER_CHUNK // directions.shape[0])
    colours, hits = [], []
    for start in range(0, len(identities), chunk):
        rows = slice(start, start + chunk)
        colour, hit = _render_chunk(identities[rows], yaw[rows], pitch[rows], roll[rows], translation[rows],
                                    expression[rows], directions)
        colours.append(colour.transpose(1, 2).reshape(-1, 3, rays, rays))
        hits.append(hit.reshape(-1, 1, rays, rays))
    return torch.cat(colours), torch.cat(hits)


def _render_chunk(identities: Sequence[HeadIdentity], yaw: Tensor, pitch: Tensor, roll: Tensor,
                  translation: Tensor, expression: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
    """``([B, P, 3] premultiplied colour, [B, P] coverage)`` for one chunk of heads."""
    batch = len(identities)
    layouts = [_layout(identity, float(e[0])) for identity, e in zip(identities, expression)]
    centres = torch.tensor(np.stack([lay[0] for lay in layouts]), dtype=torch.float32)  # [B, 13, 3]
    radii = torch.tensor(np.stack([lay[1] for lay in layouts]), dtype=torch.float32)  # [B, 13, 3]
    enabled = torch.tensor(np.stack([lay[2] for lay in layouts]))  # [B, 13]
    rotation = rotation_matrix_world(yaw, pitch, roll).float()  # [B, 3, 3] head -> camera frame
    camera = torch.tensor([0.0, CAMERA_HEIGHT, CAMERA_DISTANCE])
    origin_body = camera[None] - translation  # [B, 3] the camera in the body's frame
    origin_head = (origin_body[:, None, :] @ rotation)[:, 0]  # R^T (camera - t)
    dir_body = directions[None].expand(batch, -1, -1)  # [B, P, 3]
    dir_head = directions[None] @ rotation  # [B, P, 3] = R^T d

    head_in, _ = _ellipsoid_hits(origin_head, dir_head, centres[:, :NUM_HEAD_PRIMS], radii[:, :NUM_HEAD_PRIMS])
    body_in, _ = _ellipsoid_hits(origin_body, dir_body, centres[:, NUM_HEAD_PRIMS:], radii[:, NUM_HEAD_PRIMS:])
    entry = torch.cat([head_in, body_in], 1)  # [B, 13, P]
    entry = torch.where(enabled[:, :, None], entry, torch.full_like(entry, math.inf))

    # the hair shell counts only above the hairline (front, side and back heights blend with the angle)
    shell = origin_head[:, None, :] + entry[:, HAIR, :, None].clamp(max=1e3) * dir_head  # [B, P, 3]
    front = torch.tensor([i.hairline_front for i in identities])[:, None]
    back = torch.tensor([i.hairline_back for i in identities])[:, None]
    side = torch.tensor([lay[3]["side_hairline"] for lay in layouts])[:, None]
    fringe = torch.tensor([i.fringe for i in identities])[:, None]
    around = shell[..., 2] / radii[:, HAIR, 2:3]  # +1 at the face, -1 at the back
    line = torch.where(around > 0, side + (front - side) * _smoothstep(around / 0.75),
                       side + (back - side) * _smoothstep(-around / 0.6))
    fringe_drop = fringe * (0.75 + 0.25 * torch.cos(shell[..., 0] * 14)) * _smoothstep((around - 0.5) / 0.3)
    fringe_drop = fringe_drop * (shell[..., 0].abs() < 0.55)
    hair_ok = shell[..., 1] > line - fringe_drop
    entry[:, HAIR] = torch.where(hair_ok, entry[:, HAIR], torch.full_like(entry[:, HAIR], math.inf))

    # glasses: frames on the plane z = glasses_z of the head's frame
    glasses = torch.tensor([i.glasses for i in identities])[:, None]
    plane_z = torch.tensor([lay[3]["glasses_z"] for lay in layouts])[:, None]
    t_plane = (plane_z - origin_head[:, 2:3]) / dir_head[..., 2]  # [B, P]
    on_plane = origin_head[:, None, :] + t_plane[..., None] * dir_head
    eye_x = torch.tensor([i.eye_spacing for i in identities])[:, None]
    eye_y = torch.tensor([i.eye_height for i in identities])[:, None]
    lens = ((on_plane[..., 0].abs() - eye_x) / 0.16) ** 2 + ((on_plane[..., 1] - eye_y + 0.01) / 0.115) ** 2
    rim = (lens < 1.0) & (lens > 0.72)
    bridge = (on_plane[..., 0].abs() < eye_x - 0.14) & ((on_plane[..., 1] - eye_y - 0.03).abs() < 0.018)
    frame_hit = glasses & (rim | bridge) & (t_plane > 0)
    in_lens = glasses & (lens <= 0.72) & (t_plane > 0)

    nearest, index = entry.min(1)  # [B, P]
    hit = torch.isfinite(nearest)
    t = torch.where(hit, nearest, torch.zeros_like(nearest))
    p_head = origin_head[:, None, :] + t[..., None] * dir_head  # [B, P, 3]
    p_body = origin_body[:, None, :] + t[..., None] * dir_body
    gather = index[..., None].expand(-1, -1, 3)
    centre, radius = centres.gather(1, gather), radii.gather(1, gather)  # [B, P, 3]
    in_head = index < NUM_HEAD_PRIMS
    local = torch.where(in_head[..., None], p_head, p_body) - centre
    normal = local / radius**2
    normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    normal = torch.where(in_head[..., None], normal @ rotation.transpose(1, 2), normal)  # to the camera frame
    q = local / radius  # position on the unit sphere of the hit primitive

    # materials
    skin = torch.tensor([i.skin for i in identities])[:, None]  # [B, 1, 3]
    hair = torch.tensor([i.hair for i in identities])[:, None]
    table = torch.stack([skin[:, 0], hair[:, 0], torch.tensor([0.95, 0.94, 0.91]).expand(batch, 3),
                         torch.tensor([0.85, 0.68, 0.25]).expand(batch, 3),
                         torch.tensor([i.shirt for i in identities])], 1)  # [B, 5, 3]
    material = _MATERIAL[index]  # [B, P]
    base = table.gather(1, material[..., None].expand(-1, -1, 3))
    x, y, z = p_head.unbind(-1)
    jaw, blink_l, blink_r, brow_l, brow_r, smile = (expression[:, i:i + 1] for i in range(6))
    face = ((index == SKULL) | (index == JAW)) & (z > 0.2)

    # hair strands
    strands = 0.88 + 0.12 * torch.sin(45 * torch.atan2(x, z + 0.3) + 6 * y)
    base = torch.where((material == HAIR_M)[..., None], base * strands[..., None], base)

    # blush, brows
    for sign in (1.0, -1.0):
        blush = 0.16 * torch.exp(-((x - sign * 0.36) ** 2 + (y + 0.16) ** 2) / 0.015)
        base = torch.where(face[..., None], base + (blush * face)[..., None] * (torch.tensor([0.9, 0.4, 0.4]) - base),
                           base)
        raise_ = brow_l if sign > 0 else brow_r
        along = (x - sign * eye_x) / 0.17
        centre_y = eye_y + 0.17 + 0.06 * raise_ + 0.035 * (1 - along**2) - 0.015 * sign * along
        thickness = torch.tensor([i.brow_thickness for i in identities])[:, None] * (1 - 0.45 * along**2)
        brow = face & (along.abs() < 1) & ((y - centre_y).abs() < thickness)
        base = torch.where(brow[..., None], hair * 0.75, base)

    # mouth: upper lip, opening (with teeth) that grows with the jaw, lower lip
    mouth_w = torch.tensor([i.mouth_width for i in identities])[:, None] * (1 + 0.15 * smile)
    mouth_y = torch.tensor([i.mouth_height for i in identities])[:, None]
    across = x / mouth_w
    shape = (1 - across**2).clamp_min(0).sqrt()
    rel = y - (mouth_y + smile * 0.06 * across**2) + 0.04 * jaw  # 0 at the top of the opening
    opening = (0.012 + 0.15 * jaw) * shape
    upper = face & (rel >= 0) & (rel < 0.04 * shape)
    gap = face & (rel < 0) & (rel > -opening)
    lower = face & (rel <= -opening) & (rel > -opening - 0.05 * shape)
    lips = torch.tensor([i.lips for i in identities])[:, None]
    base = torch.where((upper | lower)[..., None], lips, base)
    teeth = gap & (rel > -0.3 * opening) & (jaw > 0.15)
    base = torch.where(gap[..., None], torch.tensor([0.28, 0.06, 0.07]), base)
    base = torch.where(teeth[..., None], torch.tensor([0.92, 0.90, 0.84]), base)

    # nostrils
    nostril = (index == NOSE) & (q[..., 1] < -0.45) & (q[..., 2] > 0.1) & (((q[..., 0].abs() - 0.45) / 0.28) ** 2
                                                                         + ((q[..., 1] + 0.75) / 0.25) ** 2 < 1)
    base = torch.where(nostril[..., None], base * 0.35, base)

    # eyes: iris and pupil facing +z, lids that close downwards with the blink
    eye = (index == EYE_L) | (index == EYE_R)
    blink = torch.where(index == EYE_L, blink_l, blink_r)
    qx, qy, qz = q.unbind(-1)
    disc = (qx**2 + qy**2).sqrt()
    iris = eye & (qz > 0) & (disc < 0.5)
    iris_colour = torch.tensor([i.iris for i in identities])[:, None] * (1.1 - 0.5 * disc[..., None])
    base = torch.where(iris[..., None], iris_colour, base)
    base = torch.where((iris & (disc < 0.2))[..., None], torch.tensor([0.03, 0.03, 0.04]), base)
    lid_top = 0.62 - 1.55 * blink - 0.35 * qx**2
    lid_bottom = -0.5 + 0.3 * qx**2 + 0.1 * blink
    lid = eye & ((qy > lid_top) | (qy < lid_bottom))
    lash = eye & (qy > lid_top) & (qy < lid_top + 0.16) & (blink < 0.95)
    base = torch.where(lid[..., None], skin * 0.9, base)
    base = torch.where(lash[..., None], hair * 0.4 + 0.02, base)

    # shading: one light plus ambient, a glint on the eyes
    light = torch.tensor(LIGHT, dtype=torch.float32)
    diffuse = (normal @ light).clamp_min(0)[..., None]
    colour = base * (0.38 + 0.68 * diffuse)
    reflect = 2 * normal[..., 2:3] * normal - torch.tensor([0.0, 0.0, 1.0])
    glint = ((reflect @ light).clamp_min(0) ** 40)[..., None] * (eye & ~lid)[..., None]
    colour = colour + 0.5 * glint

    # glasses in front of what they cover
    frame_colour = torch.tensor([i.glasses_colour for i in identities])[:, None]
    front = frame_hit & (t_plane < torch.where(hit, nearest, torch.full_like(nearest, math.inf)))
    lens_front = in_lens & (t_plane < torch.where(hit, nearest, torch.full_like(nearest, math.inf))) & hit
    colour = torch.where(lens_front[..., None], colour * 0.9 + 0.06, colour)
    colour = torch.where(front[..., None], frame_colour * (0.5 + 0.5 * float(LIGHT[2])), colour)
    coverage = (hit | front).float()
    return colour.clamp(0, 1) * coverage[..., None], coverage
