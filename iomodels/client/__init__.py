"""The client side: `EchoClient` (one blocking connection, the `iomodels client` command) and
`ConnectionPool` (a few persistent connections shared by threads)."""

from iomodels.client.echo import EchoClient
from iomodels.client.pool import ConnectionPool, PoolClosed, PoolTimeout

__all__ = ["ConnectionPool", "EchoClient", "PoolClosed", "PoolTimeout"]
