"""COCO-FUNIT and FUNIT few-shot image translation (arXiv 2007.07431): networks in ``model``, training in
``system``, few-shot evaluation in ``evaluation``, the ``imaginate translate`` command in ``translate``."""

from imaginate.registry import register_system
from imaginate.systems.coco_funit.demo import demo
from imaginate.systems.coco_funit.system import COCOFUNITConfig, COCOFUNITSystem

register_system("coco_funit", COCOFUNITConfig, COCOFUNITSystem,
                "COCO-FUNIT / FUNIT (model.content_conditioned=false) few-shot translation on procedural species",
                demo=demo)

__all__ = ["COCOFUNITConfig", "COCOFUNITSystem"]
