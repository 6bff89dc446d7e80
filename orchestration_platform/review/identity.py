"""Who is asking: the signed-in user from the authenticating proxy's headers, trusted only from the proxy.

The review page never reads a reviewer from a form field. It takes the user, email and groups from the
headers set by the proxy in front of it (oauth2-proxy: X-Forwarded-User / -Email / -Groups) and only when
the request provably came through that proxy: it carries the configured shared secret header, and/or
its peer address is in a trusted network. Otherwise it is refused. For `make dev` a fixed development
identity (REVIEW_DEV_USER) replaces the proxy; it is refused when DAGSTER_DEPLOYMENT=prod.

| variable | meaning | default |
|---|---|---|
| REVIEW_USER_HEADER | header with the signed-in user | `X-Forwarded-User` |
| REVIEW_EMAIL_HEADER | header with the user's email | `X-Forwarded-Email` |
| REVIEW_GROUPS_HEADER | header with the user's groups (comma-separated) | `X-Forwarded-Groups` |
| REVIEW_PROXY_SECRET_HEADER | header in which the proxy sends the shared secret | `X-Review-Proxy-Secret` |
| REVIEW_PROXY_SECRET | the shared secret (a secret: from a Secret, never logged) | unset |
| REVIEW_TRUSTED_PROXIES | peer networks the proxy connects from (CIDRs, comma-separated) | unset |
| REVIEW_DEV_USER | development identity for `make dev` (never in prod) | unset |
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass

from orchestration_platform.lib.ml.approval_policy import Reviewer


class IdentityConfigError(ValueError):
    """The review page cannot start: it would trust identity headers from anyone."""


class NotThroughProxy(PermissionError):
    """A request that did not come through the authenticating proxy (or has no signed-in user)."""


@dataclass(frozen=True)
class ProxyTrust:
    user_header: str = "X-Forwarded-User"
    email_header: str = "X-Forwarded-Email"
    groups_header: str = "X-Forwarded-Groups"
    secret_header: str = "X-Review-Proxy-Secret"
    secret: str = ""
    trusted_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    dev_user: str = ""

    def __repr__(self) -> str:  # the secret never reaches a log line or a traceback
        return (
            f"ProxyTrust(user_header={self.user_header!r}, secret={'set' if self.secret else 'unset'}, "
            f"trusted_networks={[str(n) for n in self.trusted_networks]}, dev_user={self.dev_user!r})"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProxyTrust:
        env = os.environ if env is None else env

        def get(name: str, default: str = "") -> str:
            return env.get(name, "").strip() or default

        networks = []
        for raw in filter(None, (part.strip() for part in get("REVIEW_TRUSTED_PROXIES").split(","))):
            try:
                networks.append(ipaddress.ip_network(raw, strict=False))
            except ValueError:
                raise IdentityConfigError(
                    f"REVIEW_TRUSTED_PROXIES: {raw!r} is not a network: use CIDRs such as 10.0.0.0/8 or 127.0.0.1/32"
                ) from None
        trust = cls(
            user_header=get("REVIEW_USER_HEADER", cls.user_header),
            email_header=get("REVIEW_EMAIL_HEADER", cls.email_header),
            groups_header=get("REVIEW_GROUPS_HEADER", cls.groups_header),
            secret_header=get("REVIEW_PROXY_SECRET_HEADER", cls.secret_header),
            secret=get("REVIEW_PROXY_SECRET"),
            trusted_networks=tuple(networks),
            dev_user=get("REVIEW_DEV_USER"),
        )
        if trust.dev_user and get("DAGSTER_DEPLOYMENT") == "prod":
            raise IdentityConfigError(
                "REVIEW_DEV_USER is set with DAGSTER_DEPLOYMENT=prod: a development identity never runs in prod; "
                "unset REVIEW_DEV_USER and put the review page behind the sign-in proxy"
            )
        if not trust.dev_user and not trust.secret and not trust.trusted_networks:
            raise IdentityConfigError(
                "the review page trusts identity headers only from the authenticating proxy: set "
                "REVIEW_PROXY_SECRET (sent by the proxy in REVIEW_PROXY_SECRET_HEADER) and/or REVIEW_TRUSTED_PROXIES "
                "(the proxy's network); for local development set REVIEW_DEV_USER"
            )
        if trust.secret and len(trust.secret) < 16:
            raise IdentityConfigError("REVIEW_PROXY_SECRET is shorter than 16 characters: use a long random value")
        return trust

    def identify(self, headers: Mapping[str, str], peer: str | None) -> Reviewer:
        """The signed-in reviewer of one request, or `NotThroughProxy` (the message never echoes secrets)."""
        if self.dev_user:
            return Reviewer(name=self.dev_user, via="dev-identity")
        if self.trusted_networks:
            try:
                address = ipaddress.ip_address(peer or "")
            except ValueError:
                address = None
            if address is None or not any(address in network for network in self.trusted_networks):
                raise NotThroughProxy(
                    f"request from {peer or 'an unknown address'} did not come through the sign-in proxy "
                    "(not a trusted proxy network): open the review page through its sign-in URL"
                )
        if self.secret:
            sent = headers.get(self.secret_header, "")
            if not hmac.compare_digest(sent.encode(), self.secret.encode()):
                raise NotThroughProxy(
                    f"request did not come through the sign-in proxy (the {self.secret_header} header is "
                    f"{'wrong' if sent else 'missing'}): open the review page through its sign-in URL"
                )
        user = headers.get(self.user_header, "").strip()
        if not user:
            raise NotThroughProxy(f"the sign-in proxy sent no signed-in user ({self.user_header} is empty)")
        groups = tuple(g.strip() for g in headers.get(self.groups_header, "").split(",") if g.strip())
        return Reviewer(
            name=user[:200], email=headers.get(self.email_header, "").strip()[:200], groups=groups, via="proxy"
        )
