"""COCO-FUNIT and FUNIT few-shot image translation (arXiv 2007.07431): networks in ``model``."""
