"""One folder per research system; importing this package registers them all."""

from imaginate.systems import (  # noqa: F401
    charlm,
    classify,
    coco_funit,
    face_vid2vid,  # noqa: F401
    gan,
    gancraft,
    lns_madam,
    styled_text,
    vid2vid,  # noqa: F401
    wsod,
)
