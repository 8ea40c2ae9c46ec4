"""Class-conditional GAN built from the toolkit in imaginate.nn (arXiv 2008.02793)."""

from imaginate.registry import register_system
from imaginate.systems.gan.demo import demo
from imaginate.systems.gan.system import GANConfig, GANSystem

register_system("gan", GANConfig, GANSystem,
                "class-conditional GAN (CBN ResNet G, projection D, hinge, SN, EMA) on Fashion-MNIST / digits",
                demo=demo)

__all__ = ["GANConfig", "GANSystem"]
