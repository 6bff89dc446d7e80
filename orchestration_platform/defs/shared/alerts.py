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
        """Send `payload`; returns whether the webhook accepted it (errors are logged without the URL)."""
        # urllib, not httpx: httpx logs every request URL at INFO, and this URL is a secret.
        import json
        import urllib.error
        import urllib.request

        if not self.url:
            log.warning("alert (no ALERT_WEBHOOK_URL configured): %s", payload.get("text"))
            return False
        request = urllib.request.Request(
            self.url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            log.error("alert webhook unreachable (%s); alert: %s", type(reason).__name__, payload.get("text"))
            return False
        if status >= 300:
            log.error("alert webhook answered %s; alert: %s", status, payload.get("text"))
            return False
        return True
