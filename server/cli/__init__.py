"""``amgs server ...``: the collector's command line (``main``) and staff accounts (``users``)."""

from .main import cli

__all__ = ["cli"]
