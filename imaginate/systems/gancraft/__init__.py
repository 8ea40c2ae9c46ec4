"""GANcraft: neural rendering of block worlds (arXiv 2104.07659). The renderer in ``model`` (``networks``,
``voxel_field``), the pseudo ground truth in ``pseudo_gt``, the segmentation discriminator in
``discriminator``, training in ``system``, metrics in ``evaluation``, the ``imaginate render`` command in
``render`` and the demo part in ``demo``."""

from imaginate.registry import register_system
from imaginate.systems.gancraft.demo import demo
from imaginate.systems.gancraft.system import GANcraftConfig, GANcraftSystem

register_system("gancraft", GANcraftConfig, GANcraftSystem,
                "GANcraft neural rendering of a procedural block world (pseudo-GT SPADE + OASIS D)", demo=demo)

__all__ = ["GANcraftConfig", "GANcraftSystem"]
