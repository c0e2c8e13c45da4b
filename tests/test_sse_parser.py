"""Server-sent events from an upstream (costr/wire/sse.py SSEParser): however the body is cut
into chunks on the wire, the same events come out, and an oversized line or event is refused
as the retryable 502 it has always been."""
import random

import pytest

from costr.errors import UpstreamError
from costr.wire.sse import SSEParser, SSEvent

BODY = (b": a comment the client never sees\r\n"
        b"event: message_start\r\n"
        b"data: {\"a\": 1}\r\n"
        b"\r\n"
        b"data: {\"b\":\n"
        b"data: 2}\n"
        b"\n"
        b"data:no space\n"
        b"\n"
        b"\n"
        b"data: caf\xc3\xa9\n"
        b"\n"
        b"event: last\n"
        b"data: without a blank line at the end")

EXPECTED = [SSEvent("message_start", '{"a": 1}'), SSEvent(None, '{"b":\n2}'),
            SSEvent(None, "no space"), SSEvent(None, "café"),
            SSEvent("last", "without a blank line at the end")]


def parse(chunks, max_line=1024, max_event=None) -> list[SSEvent]:
    parser = SSEParser(max_line, max_event, "upstream.example")
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events + parser.close()


def test_events_are_the_same_however_the_body_is_cut():
    assert parse([BODY]) == EXPECTED
    for cut in range(len(BODY) + 1):   # every place a chunk boundary can fall
        assert parse([BODY[:cut], BODY[cut:]]) == EXPECTED, cut
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(BODY)), rng.randint(1, 12)))
        chunks = [BODY[a:b] for a, b in zip([0, *cuts], [*cuts, len(BODY)])]
        assert parse(chunks) == EXPECTED
    assert parse([bytes([b]) for b in BODY]) == EXPECTED   # a byte at a time


def test_a_line_longer_than_the_cap_is_refused_even_before_it_ends():
    with pytest.raises(UpstreamError) as refused:
        parse([b"data: " + b"x" * 60, b"x" * 60], max_line=100)   # no newline yet
    assert refused.value.retryable and "stream line" in str(refused.value)
    assert parse([b"data: " + b"x" * 90 + b"\n\n"], max_line=100) == [SSEvent(None, "x" * 90)]


def test_an_event_whose_data_lines_add_up_past_the_cap_is_refused():
    lines = b"".join(b"data: " + b"y" * 40 + b"\n" for _ in range(5))
    with pytest.raises(UpstreamError) as refused:
        parse([lines + b"\n"], max_line=100, max_event=200)
    assert "stream event" in str(refused.value)
    assert len(parse([lines[:-47] + b"\n"], max_line=100, max_event=200)) == 1
