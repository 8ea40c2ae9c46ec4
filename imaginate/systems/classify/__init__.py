"""Image classification: the harness that the optimizer and low-precision work is measured on."""

from imaginate.registry import register_system
from imaginate.systems.classify.demo import demo
from imaginate.systems.classify.system import ClassifyConfig, ClassifySystem

register_system("classify", ClassifyConfig, ClassifySystem,
                "image classification (MLP / CNN / ResNet-18) on digits, Fashion-MNIST or an image folder",
                demo=demo)

__all__ = ["ClassifyConfig", "ClassifySystem"]
