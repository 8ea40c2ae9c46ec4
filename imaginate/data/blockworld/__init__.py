"""Block worlds and a pure-PyTorch ray-voxel renderer, shared by GANcraft and world-consistent vid2vid.

``world``: the ``[X, Y, Z]`` grid (Y up), label table, procedural generator, ``.npy`` files;
``camera``: pinhole cameras and trajectories; ``raycast``: the vectorised DDA and its brute-force
reference; ``render``: segmentation, depth, normals and the "photo" shader; ``paths``: camera paths
that revisit poses; ``label_video``: vid2vid's label videos with exact flow; ``guidance``: unprojection,
the point store and z-buffered splatting of world-consistent vid2vid.
"""

from imaginate.data.blockworld.camera import (
    DEFAULT_FOV,
    PinholeCamera,
    fly_through,
    intrinsics_from_fov,
    is_valid_view,
    look_at,
    orbit,
    random_valid_poses,
    view_statistics,
)
from imaginate.data.blockworld.guidance import PointStore, project, snap_to_voxel_faces, splat, unproject
from imaginate.data.blockworld.label_video import (
    LabelVideo,
    LabelVideoDataset,
    LabelVideoSpec,
    exact_flow,
    label_video_specs,
    make_label_video,
    render_label_video,
    stack_label_videos,
)
from imaginate.data.blockworld.paths import (
    CAMERA_PATHS,
    camera_path,
    loop,
    out_and_back,
    revisit,
    revisit_pairs,
)
from imaginate.data.blockworld.raycast import (
    RayHits,
    ray_voxel_intersections,
    ray_voxel_intersections_reference,
)
from imaginate.data.blockworld.render import (
    PhotoStyle,
    block_textures,
    depth_to_rgb,
    label_map,
    render_all,
    render_depth,
    render_normals,
    render_photo,
    render_segmentation,
    save_png,
    sky_color,
)
from imaginate.data.blockworld.world import (
    AIR,
    BLOCK_IDS,
    DEFAULT_LABELS,
    BlockLabel,
    BlockWorld,
    generate_world,
    load_world,
    save_world,
)

__all__ = [
    "AIR",
    "BLOCK_IDS",
    "DEFAULT_FOV",
    "DEFAULT_LABELS",
    "BlockLabel",
    "BlockWorld",
    "PhotoStyle",
    "PinholeCamera",
    "RayHits",
    "block_textures",
    "depth_to_rgb",
    "fly_through",
    "generate_world",
    "intrinsics_from_fov",
    "is_valid_view",
    "label_map",
    "load_world",
    "look_at",
    "orbit",
    "random_valid_poses",
    "ray_voxel_intersections",
    "ray_voxel_intersections_reference",
    "render_all",
    "render_depth",
    "render_normals",
    "render_photo",
    "render_segmentation",
    "save_png",
    "save_world",
    "sky_color",
    "view_statistics",
    "CAMERA_PATHS",
    "LabelVideo",
    "LabelVideoDataset",
    "LabelVideoSpec",
    "PointStore",
    "camera_path",
    "exact_flow",
    "label_video_specs",
    "loop",
    "make_label_video",
    "out_and_back",
    "project",
    "render_label_video",
    "revisit",
    "revisit_pairs",
    "snap_to_voxel_faces",
    "splat",
    "stack_label_videos",
    "unproject",
]
