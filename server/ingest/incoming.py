"""One MQTT message as received: what crosses from the receiver process to the writer, pickled as itself."""

from __future__ import annotations

from typing import NamedTuple


class Incoming(NamedTuple):
    """One message as the MQTT callback enqueued it. ``generation`` = the connection it came on (its
    PUBACK is only valid there); ``received_at`` = 0 means "when the writer takes it"."""

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 0
    retain: bool = False
    received_at: float = 0.0
    generation: int = 0

    def __reduce__(self):
        # pickled as (class, fields): 2.4x faster than the NamedTuple default (copyreg.__newobj__ and a
        # Python-level __getnewargs__), which counts at thousands of messages a second
        return (Incoming, tuple(self))
