"""The one step retry policy every domain uses (`retry_policy=STEP_RETRY` on assets).

It covers failures of the machinery (a database restart, a lost connection, a killed pod): transient
errors of a source are retried inside the step, and a permanent error of the data raises
`dg.Failure(allow_retries=False)`, which this policy does not retry.
"""

from __future__ import annotations

import dagster as dg

STEP_RETRY = dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
