"""The sans-I/O session on its own: no sockets."""

import pytest
from hypothesis import given, strategies as st

from iomodels.serving.core import EchoSession


@given(data=st.binary(max_size=4096), cuts=st.lists(st.integers(min_value=0, max_value=4096)),
       send_sizes=st.lists(st.integers(min_value=1, max_value=700), min_size=1))
def test_any_chunking_and_any_partial_sends_give_exactly_upper(data, cuts, send_sizes):
    session = EchoSession(high_water=1024, low_water=256)
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    out = bytearray()
    for i, (start, end) in enumerate(zip(bounds, bounds[1:])):
        session.receive_data(data[start:end])
        # a partial send of some of what is pending, as a full socket buffer would allow
        pending = session.pending()
        count = min(len(pending), send_sizes[i % len(send_sizes)])
        out += pending[:count]
        session.sent(count)
    session.receive_eof()
    while session.wants_write:
        pending = session.pending()
        out += pending
        session.sent(len(pending))
    assert bytes(out) == data.upper()
    assert session.finished


@given(chunks=st.lists(st.binary(max_size=512), max_size=20), takes=st.lists(st.integers(0, 600), min_size=1))
def test_the_short_path_reply_then_keep_what_was_not_sent(chunks, takes):
    """What a readiness model does with nothing queued: reply_to, send, keep the rest."""
    session = EchoSession(high_water=1024, low_water=256)
    out = bytearray()
    for i, chunk in enumerate(chunks):
        if session.wants_write:
            pending = session.pending()
            count = min(len(pending), takes[i % len(takes)])
            out += pending[:count]
            session.sent(count)
            if session.wants_write:
                session.receive_data(chunk)
                continue
        reply = session.reply_to(chunk)
        count = min(len(reply), takes[i % len(takes)])
        out += reply[:count]
        session.keep(reply[count:])
    out += session.pending()
    assert bytes(out) == b"".join(chunks).upper()


def test_water_marks_pause_and_resume_reading():
    session = EchoSession(high_water=10, low_water=4)
    session.receive_data(b"a" * 10)
    assert session.wants_read  # at the mark, not past it
    session.receive_data(b"b")
    assert session.reading_paused and not session.wants_read
    session.sent(5)  # 6 pending: still above the low-water mark
    assert session.reading_paused
    session.sent(2)  # 4 pending: resume
    assert session.wants_read
    assert session.pending() == b"AAAB"


def test_eof_then_finished_only_when_flushed():
    session = EchoSession()
    session.receive_data(b"bye")
    session.receive_eof()
    assert not session.finished and not session.wants_read
    session.sent(3)
    assert session.finished


def test_misuse_is_a_bug():
    session = EchoSession()
    with pytest.raises(ValueError):
        session.sent(1)
    session.receive_eof()
    with pytest.raises(RuntimeError):
        session.receive_data(b"late")
    with pytest.raises(ValueError):
        EchoSession(high_water=1, low_water=2)


def test_non_ascii_is_unchanged():
    session = EchoSession()
    assert session.receive_data(bytes([0xE9, 0xFF, ord("a"), ord("{")])) == bytes([0xE9, 0xFF, ord("A"), ord("{")])
