"""Errors a user can cause: the CLI prints them as one line and exits 2."""


class GenlabError(Exception):
    """A problem with the user's input (path, file, config, data); the message names the thing and the fix."""


class TrainingDiverged(GenlabError):
    """A loss term became NaN or infinite; the last good checkpoint is left untouched."""


class DiskFull(GenlabError):
    """A write ran out of disk space; the file it would have replaced is left untouched."""

    folder = None  # set by runs.disk_full: the full folder, the bytes the write needed and what it wrote
    needed = 0
    what = ""
