"""No backend shows a password, token or secret key in its repr, whatever the
URL form (userinfo, NATS token, query option, server list)."""

from __future__ import annotations

import pytest

import microstd.broker
import microstd.registry
import microstd.store
import microstd.sync
from microstd._backends import redact, redact_text

SECRET = "s3cr3t-Pa55"

OPENERS = {
    "store": microstd.store.open,
    "broker": microstd.broker.open,
    "sync": microstd.sync.open,
    "registry": microstd.registry.open,
}
URLS = {
    "store": [
        f"redis://user:{SECRET}@127.0.0.1:6379/0",
        f"redis://:{SECRET}@127.0.0.1:6379/0",
        f"redis://127.0.0.1:6379/0?password={SECRET}",
        f"nats://user:{SECRET}@127.0.0.1:4222?bucket=b",
        f"nats://{SECRET}@127.0.0.1:4222?bucket=b",
        f"s3://bucket?endpoint_url=http://AKID:{SECRET}@127.0.0.1:9000"
        f"&aws_access_key_id=AKID&aws_secret_access_key={SECRET}",
    ],
    "broker": [
        f"redis://user:{SECRET}@127.0.0.1:6379/0",
        f"nats://user:{SECRET}@127.0.0.1:4222",
        f"nats://{SECRET}@127.0.0.1:4222",
    ],
    "sync": [f"redis://user:{SECRET}@127.0.0.1:6379/0", f"etcd://user:{SECRET}@127.0.0.1:2379"],
    "registry": [
        f"redis://user:{SECRET}@127.0.0.1:6379/0",
        f"redis://127.0.0.1:6379/0?password={SECRET}",
        f"nats://user:{SECRET}@127.0.0.1:4222",
        f"nats://{SECRET}@127.0.0.1:4222",
        f"etcd://user:{SECRET}@127.0.0.1:2379",
    ],
}
CASES = [(area, url) for area, urls in URLS.items() for url in urls]


@pytest.mark.parametrize(("area", "url"), CASES)
def test_backend_reprs_hide_secrets(area: str, url: str) -> None:
    backend = OPENERS[area](url)  # opening does not connect
    text = repr(backend)
    assert SECRET not in text
    assert type(backend).__name__ in text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://u:p@ss@h:1/0", "redis://u:***@h:1/0"),
        ("nats://a:b@h1:4222,nats://c:d@h2:4222", "nats://a:***@h1:4222,nats://c:***@h2:4222"),
        ("nats://tok@h:4222", "nats://***@h:4222"),
        ("redis://user@h:6379", "redis://user@h:6379"),
        ("redis://h?password=pw&db=1", "redis://h?password=***&db=1"),
        ("http://h/x?X-Amz-Signature=abc&a=1", "http://h/x?X-Amz-Signature=***&a=1"),
        ("memory://", "memory://"),
        ("memory://name?impl=python", "memory://name?impl=python"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_redact_text_hides_userinfo_in_messages() -> None:
    message = f'Could not connect to the endpoint URL: "http://AKID:{SECRET}@10.0.0.1:9000/b"'
    assert SECRET not in redact_text(message)
    assert "http://AKID:***@10.0.0.1:9000/b" in redact_text(message)
