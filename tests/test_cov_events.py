"""EventBus.subscribe's buffer check and a closed subscription (test_events.py covers what
sessions publish)."""

from __future__ import annotations

import pytest

from trio_ftp.events import EventBus, ServerEvent


@pytest.mark.parametrize("buffer", [0, -1, True, 2.0, "8", None])
def test_subscribe_needs_a_positive_integer_buffer(buffer):
    bus = EventBus()
    with pytest.raises(ValueError, match="buffer must be a positive integer"):
        bus.subscribe(buffer)
    assert not bus.has_subscribers


async def test_full_buffer_drops_and_counts_and_close_ends_iteration():
    bus = EventBus()
    with bus.subscribe(buffer=1) as stream:
        assert bus.has_subscribers
        first = ServerEvent(kind="login", session=1, peer="127.0.0.1:1")
        bus.publish(first)
        bus.publish(ServerEvent(kind="logout", session=1, peer="127.0.0.1:1"))
        assert stream.dropped == 1
        assert await stream.__anext__() is first
    assert not bus.has_subscribers
    bus.publish(first)  # to nobody: no error
    assert [event async for event in stream] == []
