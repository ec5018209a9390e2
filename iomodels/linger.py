"""Closing with a reset: one socket option, used by servers and clients alike.

With SO_LINGER on and a zero timeout, close() sends an RST and drops unsent output instead of a
FIN. A server uses it so a peer it cuts off learns so (a FIN would look like a reply that ended
normally); a client uses it where a FIN would leave its port in TIME_WAIT for a minute.
"""

from __future__ import annotations

import contextlib
import socket
import struct

_RESET = struct.pack("ii", 1, 0)  # l_onoff = 1, l_linger = 0 s


def reset_on_close(sock) -> None:
    """Make sock.close() send an RST (a socket already failing is left as it is)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
