"""Who may call the bridge: each sender with its own secret, accepted on that sender's endpoints only.

What real senders can send decides the forms accepted:

* **lakeFS** cannot sign: a webhook hook sends static `headers` / `query_params`, whose
  `{{ ENV.LAKEFSACTION_... }}` values lakeFS fills from its own environment (and masks in hook output).
  So lakeFS sends the secret itself, in the `X-Lakeloop-Token` header (never a query parameter: URLs
  end up in access logs).
* **Label Studio** cannot sign either: a webhook has static custom headers, so it sends its own secret in
  `X-Lakeloop-Token` too. Every Label Studio admin can read it, which is why it opens no lakeFS endpoint.
* **Senders that can sign** (scripts, proxies, other services) send `X-Lakeloop-Timestamp` (unix seconds) and
  `X-Lakeloop-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." + body>` with the endpoint's secret. A
  signature whose timestamp is further than the replay window from the bridge's clock is refused, so a
  captured request cannot be replayed later; within the window the ledger's dedupe makes a replay a no-op.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from lakeloop.events import WEBHOOK_TOKEN_HEADER

TOKEN_HEADER = WEBHOOK_TOKEN_HEADER
SIGNATURE_HEADER = "X-Lakeloop-Signature"
TIMESTAMP_HEADER = "X-Lakeloop-Timestamp"
DEFAULT_REPLAY_WINDOW_S = 300.0


def signature(secret: str, body: bytes, timestamp: str) -> str:
    """`sha256=<hex>` over `<timestamp>.<body>`: the timestamp is signed, so it cannot be moved."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The headers a signing sender adds to a POST of `body`."""
    ts = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: signature(secret, body, ts)}


def _same(given: str, want: str) -> bool:
    return hmac.compare_digest(given.encode(), want.encode())


@dataclass(frozen=True)
class SenderAuth:
    """One sender's secret; `others` are the other senders' (name -> secret), to say so when one is misused."""

    sender: str
    secret: str = field(repr=False)
    replay_window_s: float = DEFAULT_REPLAY_WINDOW_S
    others: Mapping[str, str] = field(default_factory=dict, repr=False)

    def refusal(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str | None:
        """None when the request is this sender's; otherwise why not (no secret in it: it goes back to the caller)."""
        token = headers.get(TOKEN_HEADER)
        if token is not None:
            if _same(token, self.secret):
                return None
            return self._wrong(lambda secret: _same(token, secret), TOKEN_HEADER)
        sig = headers.get(SIGNATURE_HEADER)
        if sig is None:
            return f"missing {TOKEN_HEADER} (or {SIGNATURE_HEADER} with {TIMESTAMP_HEADER})"
        ts = headers.get(TIMESTAMP_HEADER)
        if ts is None:
            return f"{SIGNATURE_HEADER} needs {TIMESTAMP_HEADER} (unix seconds, signed with the body)"
        try:
            age = (time.time() if now is None else now) - float(ts)
        except ValueError:
            return f"{TIMESTAMP_HEADER} {ts!r} is not unix seconds"
        if not _same(sig, signature(self.secret, body, ts)):
            return self._wrong(lambda secret: _same(sig, signature(secret, body, ts)), SIGNATURE_HEADER)
        if abs(age) > self.replay_window_s:
            return (f"{TIMESTAMP_HEADER} is {abs(age):.0f} s {'old' if age > 0 else 'ahead'}, outside the replay "
                    f"window of {self.replay_window_s:.0f} s: a replayed or delayed request (or a skewed clock)")
        return None

    def _wrong(self, matches: Callable[[str], bool], header: str) -> str:
        for other, secret in self.others.items():
            if matches(secret):
                return f"{header} carries {other}'s secret, which is accepted on {other}'s endpoints only"
        return f"wrong {header} for {self.sender}"
