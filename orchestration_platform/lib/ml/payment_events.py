"""The payment event schema (docs/events.md) and its validation, with a reason for every rejection.

Two event types share one topic: a `transaction` when a card is charged, and a `label` (fraud or
not) that arrives minutes to hours later, once the charge is disputed or cleared. The schema is
declared with msgspec, which parses and checks a message in one pass in C (~1 us): the consumer
must keep up with the broker (see benchmarks/bench_ml.py; pydantic measured 5.6 us per message).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

TRANSACTION_SCHEMA = "payments.transaction/v1"
LABEL_SCHEMA = "payments.label/v1"
MERCHANT_CATEGORIES = (
    "grocery",
    "fuel",
    "restaurants",
    "electronics",
    "travel",
    "gambling",
    "online_services",
)
CHANNELS = ("card_present", "contactless", "online")
MAX_AMOUNT = 100_000.0
MAX_MESSAGE_BYTES = 16_384
NUL_ESCAPE = b"\\u0000"

# Identifiers are opaque (no pattern: a regex per field tripled the validation cost); NUL is refused below.
Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Country = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")]
Instant = Annotated[datetime, msgspec.Meta(tz=True)]
MerchantCategory = Literal[
    "grocery", "fuel", "restaurants", "electronics", "travel", "gambling", "online_services"
]
Channel = Literal["card_present", "contactless", "online"]


class TransactionEvent(
    msgspec.Struct, tag_field="schema", tag=TRANSACTION_SCHEMA, forbid_unknown_fields=True, frozen=True
):
    """A card charge, sent when it happens (or late, when a terminal was offline)."""

    event_id: Identifier
    transaction_id: Identifier
    occurred_at: Instant
    card_id: Identifier
    merchant_id: Identifier
    merchant_category: MerchantCategory
    amount: Annotated[float, msgspec.Meta(gt=0, le=MAX_AMOUNT)]
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
    card_country: Country
    merchant_country: Country
    channel: Channel


class LabelEvent(
    msgspec.Struct, tag_field="schema", tag=LABEL_SCHEMA, forbid_unknown_fields=True, frozen=True
):
    """The outcome of a transaction (fraud or not), known later than the transaction itself."""

    event_id: Identifier
    transaction_id: Identifier
    is_fraud: bool
    labeled_at: Instant


PaymentEvent = TransactionEvent | LabelEvent
_DECODER = msgspec.json.Decoder(PaymentEvent)


class InvalidEvent(ValueError):
    """A message that is not a valid payment event; `reason` says what is wrong, for the dead-letter table."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_event(raw: bytes | None) -> TransactionEvent | LabelEvent:
    """Parse and validate one Kafka message value; raises `InvalidEvent` with the reason."""
    if raw is None:
        raise InvalidEvent("message has no value (tombstone): producers must send a JSON event")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidEvent(f"message is {len(raw)} bytes, over the {MAX_MESSAGE_BYTES}-byte limit")
    if NUL_ESCAPE in raw:
        raise InvalidEvent(
            "message contains a NUL character (\\u0000), which the store's text columns refuse"
        )
    try:
        return _DECODER.decode(raw)
    except msgspec.ValidationError as error:
        raise InvalidEvent(f"schema violation: {error}") from None
    except msgspec.DecodeError as error:
        raise InvalidEvent(f"not JSON: {error}") from None


def utc(stamp: datetime) -> datetime:
    """The same instant in UTC (the store keeps UTC)."""
    return stamp.astimezone(UTC)
