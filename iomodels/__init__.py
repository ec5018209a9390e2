"""iomodels: one uppercase-echo service served by every Unix I/O model, and the tools to measure them."""

__version__ = "0.1.0"
