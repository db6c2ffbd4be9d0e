"""REDIS_SENTINELS is read when the app is built: a malformed value stops every
process at start with a message naming the variable, not at the first Redis call;
a good one points broker, results and beat at the sentinels, keeping celeryconfig's
transport options. (The failover itself: tests/faults/test_redis_failover.py.)"""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("value", ["127.0.0.1", "127.0.0.1:x", "127.0.0.1:26379,:1"])
def test_a_malformed_sentinel_list_stops_the_app_at_start(make_app, value):
    with pytest.raises(RuntimeError, match="REDIS_SENTINELS must be host:port"):
        make_app(REDIS_SENTINELS=value)


def test_every_celery_client_goes_through_the_sentinels(make_app):
    app = make_app(
        REDIS_URL="redis://:secret@ignored:1/3",
        REDIS_SENTINELS="127.0.0.1:26379, 127.0.0.2:26380",
        REDIS_SENTINEL_MASTER="main",
    )
    conf = app.extensions["celery"].conf
    expected = (
        "sentinel://:secret@127.0.0.1:26379/3;sentinel://:secret@127.0.0.2:26380/3"
    )
    assert conf.broker_url == conf.result_backend == expected
    for options in (
        conf.broker_transport_options,
        conf.result_backend_transport_options,
    ):
        assert options["master_name"] == "main"
        # celeryconfig's own options are kept.
        assert options["visibility_timeout"] == 1800
    assert conf.redbeat_redis_url == "redis-sentinel://"
    assert conf.redbeat_redis_options["sentinels"] == [
        ("127.0.0.1", 26379),
        ("127.0.0.2", 26380),
    ]
    assert conf.redbeat_redis_options["service_name"] == "main"
    assert conf.redbeat_redis_options["db"] == 3
    assert conf.broker_channel_error_retry is True
