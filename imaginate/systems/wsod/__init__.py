"""Weakly supervised object detection (wetectron, arXiv 2004.04725; UFO², arXiv 2010.10804)."""
