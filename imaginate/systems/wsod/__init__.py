"""Weakly supervised object detection (wetectron, arXiv 2004.04725): WSDDN, OICR / MIST refinement, Concrete
DropBlock, sequential batch back-propagation; networks in ``model``, losses in ``losses``, training in
``system``, inference in ``inference``, metrics and baselines in ``evaluation``."""

from imaginate.registry import register_system
from imaginate.systems.wsod.demo import demo
from imaginate.systems.wsod.system import WSODConfig, WSODSystem

register_system("wsod", WSODConfig, WSODSystem,
                "weakly supervised detection from image tags (WSDDN, OICR, MIST, Concrete DropBlock) on procedural scenes",
                demo=demo)

__all__ = ["WSODConfig", "WSODSystem"]
