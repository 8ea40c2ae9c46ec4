"""Refuse, before rendering starts, a procedural data set that cannot fit in this machine's memory.

vid2vid and face-vid2vid render their whole procedural training set into memory before the first step.
At the paper presets' sizes that set is larger than most machines (vid2vid: 64 worlds x 4 videos x 32
frames at 512x1024, ~144 GiB as stored, twice that while stacking), and rendering it takes hours before the process is killed for
memory. :func:`check_fits` turns that into one line naming the keys to lower, at once.
"""

from __future__ import annotations

import os

from imaginate.config import ConfigError


def physical_memory_bytes() -> int | None:
    """This machine's physical memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def check_fits(what: str, needed_bytes: float, keys: str, share: float = 0.8, total: int | None = None) -> None:
    """Raise :class:`ConfigError` when ``needed_bytes`` exceed ``share`` of physical memory.

    Args:
        what: what would be held, for the message (e.g. ``"vid2vid training videos (256 x 32 frames)"``).
        needed_bytes: its estimated size in memory.
        keys: the config keys that shrink it, for the message.
        share: the fraction of physical memory it may take.
        total: physical memory in bytes (default: this machine's).
    """
    total = physical_memory_bytes() if total is None else total
    if total is None or needed_bytes <= share * total:
        return
    raise ConfigError(f"{keys}: the {what} would take ~{needed_bytes / 2**30:.0f} GiB in memory, more than "
                      f"{share:.0%} of this machine's {total / 2**30:.0f} GiB; lower them (the set is rendered "
                      "up front)")
