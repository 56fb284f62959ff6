"""Log ids: YYYYMMDDHHMMSS_ + 12 nanoid characters, UTC."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from avatar_nb import generate_log_id
from avatar_nb.logid import LOG_ID_PATTERN


def test_format_and_utc():
    before = datetime.now(timezone.utc).replace(microsecond=0)
    log_id = generate_log_id()
    after = datetime.now(timezone.utc)
    assert LOG_ID_PATTERN.match(log_id)
    when = datetime.strptime(log_id[:14], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
    assert before <= when <= after
    assert len(log_id) == 27 and log_id[14] == "_"


def test_given_time_is_converted_to_utc():
    local = datetime(2026, 11, 23, 16, 30, 22, tzinfo=timezone(timedelta(hours=2)))
    assert generate_log_id(local).startswith("20261123143022_")


def test_unique_and_alphabet():
    ids = {generate_log_id() for _ in range(5000)}
    assert len(ids) == 5000
    chars = set("".join(i[15:] for i in ids))
    assert chars <= set("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    assert len(chars) > 50  # the whole alphabet is in use
