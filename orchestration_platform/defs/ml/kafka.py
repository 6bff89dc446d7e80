"""The Kafka resource: where the payment events come from (broker addresses and credentials)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field


class KafkaResource(dg.ConfigurableResource):
    """Kafka brokers. `bootstrap_servers` may carry credentials: bind it (and the SASL password) with `dg.EnvVar`."""

    bootstrap_servers: str = Field(description="host:port[,host:port] (from KAFKA_BOOTSTRAP_SERVERS)")
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = ""
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    consumers: int = Field(
        default=1,
        ge=1,
        description="Parallel consumer runs of the events topic (ML_CONSUMERS; the chart's "
        "`ml.consumers`): consumer i of N owns every N-th partition. More than the topic's partitions "
        "leaves the extra consumers idle.",
    )

    def client_config(self) -> dict:
        """librdkafka settings shared by consumers, producers and admin clients."""
        config = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol}
        if self.sasl_mechanism:
            config |= {
                "sasl.mechanism": self.sasl_mechanism,
                "sasl.username": self.sasl_username,
                "sasl.password": self.sasl_password,
            }
        return config

    def consumer_config(self, group: str) -> dict:
        """A consumer whose position is owned by the PostgreSQL store (no auto commit)."""
        from orchestration_platform.lib.ml.event_store import consumer_config

        extra = {k: v for k, v in self.client_config().items() if k != "bootstrap.servers"}
        extra |= {
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": self.heartbeat_interval_ms,
        }
        return consumer_config(self.bootstrap_servers, group, extra)
