"""Writing a batch of received pieces to a file descriptor in one system call, without
joining them first (no copy). Shared by the local store's appends and the tus checksum spill."""

from __future__ import annotations

import os

# A batch of pieces ends at this many, whatever their size: one writev takes at most IOV_MAX
# (1024 on Linux) buffers.
MAX_PIECES = 512


def write_pieces(fd: int, pieces: list[bytes]) -> int:
    """One writev for the pieces; a short write (a full disk, a signal) goes on piece by piece
    from where it stopped. Returns the bytes written (all of them)."""
    total = sum(len(piece) for piece in pieces)
    if not pieces:
        return 0
    written = os.writev(fd, pieces)
    if written == total:
        return total
    for piece in pieces:
        if written >= len(piece):
            written -= len(piece)
            continue
        view = memoryview(piece)[written:]
        written = 0
        while view:
            view = view[os.write(fd, view) :]
    return total
