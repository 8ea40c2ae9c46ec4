"""Style-example-guided text generation (arXiv 2003.00674): a style encoder, a transformer decoder with a
choice of code injection, a pair discriminator through Gumbel-softmax samples (``model``, ``losses``,
``generation``), judges trained on real text (``judges``), training (``system``), measurement
(``evaluation``), the ``imaginate write`` command (``write``) and the demo part (``demo``)."""

from imaginate.registry import register_system
from imaginate.systems.styled_text.demo import demo
from imaginate.systems.styled_text.system import StyledTextConfig, StyledTextSystem

register_system("styled_text", StyledTextConfig, StyledTextSystem,
                "paragraph continuation in the style of an example (style encoder + adversarial transformer)", demo=demo)

__all__ = ["StyledTextConfig", "StyledTextSystem"]
