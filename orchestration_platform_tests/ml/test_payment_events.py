"""The event schema: valid events parse, and every kind of bad message gets a reason that says what is wrong."""

from __future__ import annotations

import json

import pytest

from orchestration_platform.lib.ml.payment_events import (
    InvalidEvent,
    LabelEvent,
    TransactionEvent,
    parse_event,
)

TRANSACTION = {
    "schema": "payments.transaction/v1", "event_id": "ev-1", "transaction_id": "tx-1",
    "occurred_at": "2026-03-02T10:15:00+01:00", "card_id": "card-1", "merchant_id": "m-1",
    "merchant_category": "grocery", "amount": 12.5, "currency": "EUR", "card_country": "DE",
    "merchant_country": "DE", "channel": "contactless",
}  # fmt: skip
LABEL = {"schema": "payments.label/v1", "event_id": "lb-1", "transaction_id": "tx-1", "is_fraud": True,
         "labeled_at": "2026-03-02T12:00:00Z"}  # fmt: skip


def test_valid_events_parse_with_their_time_zone():
    transaction = parse_event(json.dumps(TRANSACTION).encode())
    assert isinstance(transaction, TransactionEvent)
    assert transaction.occurred_at.utcoffset().total_seconds() == 3600 and transaction.amount == 12.5
    assert isinstance(parse_event(json.dumps(LABEL).encode()), LabelEvent)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (None, "no value (tombstone)"),
        (json.dumps({**TRANSACTION, "amount": -3}).encode(), "`$.amount`"),
        (json.dumps({**TRANSACTION, "amount": "12"}).encode(), "`$.amount`"),
        (json.dumps({**TRANSACTION, "occurred_at": "2026-03-02T10:15:00"}).encode(), "timezone"),
        (json.dumps({k: v for k, v in TRANSACTION.items() if k != "card_id"}).encode(), "card_id"),
        (json.dumps({**TRANSACTION, "channel": "fax"}).encode(), "`$.channel`"),
        (json.dumps({**TRANSACTION, "card_country": "germany"}).encode(), "`$.card_country`"),
        (json.dumps({**TRANSACTION, "extra": 1}).encode(), "unknown field `extra`"),
        (json.dumps({**TRANSACTION, "schema": "payments.refund/v1"}).encode(), "`$.schema`"),
        (json.dumps({**TRANSACTION, "card_id": "a\u0000b"}).encode(), "NUL"),
        (json.dumps({**TRANSACTION, "merchant_id": "m" * 20_000}).encode(), "over the 16384-byte limit"),
    ],
)
def test_bad_messages_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(InvalidEvent) as error:
        parse_event(raw)
    assert reason in error.value.reason
