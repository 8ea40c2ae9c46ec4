"""LNS-Madam: low-precision training in a multi-base logarithmic number system (arXiv 2106.13914)."""

from imaginate.registry import register_system
from imaginate.systems.lns_madam.demo import demo
from imaginate.systems.lns_madam.system import LNSMadamConfig, build_lns_system

register_system("lns_madam", LNSMadamConfig, build_lns_system,
                "low-precision training: 8-bit LNS forward, 5-bit LNS gradients, LNS-Madam on a B-bit weight store",
                demo=demo)

__all__ = ["LNSMadamConfig", "build_lns_system"]
