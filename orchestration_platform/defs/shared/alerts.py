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
        import httpx

        if not self.url:
            log.warning("alert (no ALERT_WEBHOOK_URL configured): %s", payload.get("text"))
            return False
        try:
            response = httpx.post(self.url, json=payload, timeout=self.timeout_s)
        except httpx.HTTPError as error:
            log.error("alert webhook unreachable (%s); alert: %s", error.__class__.__name__, payload.get("text"))
            return False
        if response.status_code >= 300:
            log.error("alert webhook answered %s; alert: %s", response.status_code, payload.get("text"))
            return False
        return True
