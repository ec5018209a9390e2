"""What the client reports besides OSError: a server that answered wrong, a reader that left."""


class ReplyError(Exception):
    """The server answered something that is not the request uppercased, or out of turn."""


class StdoutClosed(Exception):
    """Whoever read our stdout went away (`| head -2`)."""
