"""One folder per research system; importing this package registers them all."""

from imaginate.systems import charlm, classify, coco_funit, gan, gancraft, lns_madam, styled_text, wsod  # noqa: F401
from imaginate.systems import face_vid2vid  # noqa: F401
from imaginate.systems import vid2vid  # noqa: F401
