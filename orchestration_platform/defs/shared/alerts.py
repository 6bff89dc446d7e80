"""The alerts webhook: run failures are posted here. The URL is a secret (it often embeds a token)."""

from __future__ import annotations

import logging

import dagster as dg

log = logging.getLogger(__name__)


class AlertWebhookResource(dg.ConfigurableResource):
    """POSTs JSON alerts to ALERT_WEBHOOK_URL; empty URL = alerts are only logged. Never logs the URL."""

    url: str = ""
    timeout_s: float = 5.0

    def post(self, payload: dict) -> bool:
        """Send `payload`; returns whether the webhook accepted it (errors are logged without the URL).

        Bounded like every outside call (lib/http.py): the whole request ends by `timeout_s`, and at most
        64 KiB of the webhook's answer is read."""
        from orchestration_platform.lib.http import ReadFailure, ReadLimits, read_sync

        if not self.url:
            log.warning("alert (no ALERT_WEBHOOK_URL configured): %s", payload.get("text"))
            return False
        limits = ReadLimits(deadline_s=self.timeout_s, read_timeout_s=self.timeout_s, max_response_bytes=64 << 10,
                            max_redirects=1)
        try:
            status = read_sync(self.url, limits, method="POST", json_body=payload).response.status_code
        except ReadFailure as failure:
            # the failure's own message may name the host; the kind is enough and never carries the secret
            log.error("alert webhook unreachable (%s); alert: %s", failure.kind, payload.get("text"))
            return False
        if status >= 300:
            log.error("alert webhook answered %s; alert: %s", status, payload.get("text"))
            return False
        return True
