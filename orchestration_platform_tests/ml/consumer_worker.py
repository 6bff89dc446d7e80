"""A consumer process for the crash and scaling tests: consumes in small batches until its partitions are drained.

python -m orchestration_platform_tests.ml.consumer_worker POSTGRES_URL BOOTSTRAP TOPIC [INDEX CONSUMERS [GROUP]]

Consumer INDEX of CONSUMERS (default 0 of 1: every partition). Each batch prints one JSON line
(`partitions` held, `consumed`), so a test can see who wrote what. A batch whose partitions are all
held by others (`ConsumerBusy`) is retried; the worker stops after a batch that held all of its
partitions and found nothing left.
"""

from __future__ import annotations

import json
import sys
import time

from orchestration_platform.lib.ml.event_store import ConsumerBusy, consume_batch, consumer_config

if __name__ == "__main__":
    postgres_url, bootstrap, topic = sys.argv[1:4]
    index, consumers = (int(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) > 5 else (0, 1)
    group = sys.argv[6] if len(sys.argv) > 6 else "crash-test"
    config = consumer_config(bootstrap, group, {"session.timeout.ms": 2000, "heartbeat.interval.ms": 500})
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            stats = consume_batch(
                postgres_url, config, topic, consumer_index=index, consumers=consumers,
                max_messages=2_000, chunk_size=300, idle_timeout_s=1.0,
            )  # fmt: skip
        except ConsumerBusy:
            print(json.dumps({"partitions": [], "consumed": 0, "busy": True}), flush=True)
            time.sleep(0.1)
            continue
        print(json.dumps({"partitions": stats.partitions, "consumed": stats.consumed}), flush=True)
        if stats.consumed == 0 and stats.lag == 0 and stats.partitions == stats.owned:
            break
    else:
        sys.exit("consumer worker: not drained within 240 s")
