"""face-vid2vid: one-shot free-view talking heads (arXiv 2011.15126). Networks in ``model`` / ``networks``,
losses in ``losses``, training and evaluation in ``system``, the motion record in ``motion``, loading a run
in ``inference``, ``imaginate talk`` in ``talk`` and the demo part in ``demo``."""

from imaginate.registry import register_system
from imaginate.systems.face_vid2vid.demo import demo
from imaginate.systems.face_vid2vid.system import FaceVid2VidConfig, FaceVid2VidSystem

register_system("face_vid2vid", FaceVid2VidConfig, FaceVid2VidSystem,
                "face-vid2vid one-shot talking heads from 3D keypoints (procedural heads)", demo=demo)

__all__ = ["FaceVid2VidConfig", "FaceVid2VidSystem"]
