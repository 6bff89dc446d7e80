"""A consumer process for the crash test: consumes in small chunks until the topic is drained.

python -m orchestration_platform_tests.ml.consumer_worker POSTGRES_URL BOOTSTRAP TOPIC
"""

from __future__ import annotations

import sys

from orchestration_platform.lib.ml.event_store import consume_batch, consumer_config

if __name__ == "__main__":
    postgres_url, bootstrap, topic = sys.argv[1:4]
    config = consumer_config(
        bootstrap, "crash-test", {"session.timeout.ms": 2000, "heartbeat.interval.ms": 500}
    )
    while True:
        stats = consume_batch(
            postgres_url, config, topic, max_messages=4_000, chunk_size=300, idle_timeout_s=1.0
        )
        if stats.consumed == 0 and stats.lag == 0:
            break
