"""Hide the password in a URL before it reaches a log, metadata, an error or the UI."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """The URL with any password replaced by `***` (`postgresql://app:***@db:5432/x`)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # an unparsable URL is shown without its authority part at all
        return url.split("@")[-1]
    if password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
