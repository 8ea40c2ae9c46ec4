"""vid2vid and world-consistent vid2vid (arXiv 1808.06601, 2007.08509): video from label videos, with
guidance images from the 3D world rendered so far. Networks in ``model``, objectives in ``losses``, data
in ``data``, training in ``system``, autoregressive synthesis in ``inference``, measures in ``evaluation``,
the ``imaginate synthesize`` command in ``synthesize`` and the demo part in ``demo``."""

from imaginate.registry import register_system
from imaginate.systems.vid2vid.demo import demo
from imaginate.systems.vid2vid.system import Vid2VidConfig, Vid2VidSystem

register_system("vid2vid", Vid2VidConfig, Vid2VidSystem,
                "vid2vid / world-consistent vid2vid on block-world label videos (model.mode=vid2vid|wc_vid2vid)", demo=demo)

__all__ = ["Vid2VidConfig", "Vid2VidSystem"]
