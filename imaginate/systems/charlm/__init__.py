"""Character-level language modelling: the sequence task of the optimizer and number-format studies."""

from imaginate.registry import register_system
from imaginate.systems.charlm.system import CharLMConfig, CharLMSystem

register_system("charlm", CharLMConfig, CharLMSystem,
                "character-level transformer LM on bundled text or a text file (bits per character)")

__all__ = ["CharLMConfig", "CharLMSystem"]
