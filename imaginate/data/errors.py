"""The error raised for data that is missing, malformed or unreadable."""

from __future__ import annotations


class DataError(ValueError):
    """A data set could not be found or read.

    The message is one line that names the path or file and says what is wrong or what to do;
    the command line turns it into exit status 2.
    """
