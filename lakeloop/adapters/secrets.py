"""Secrets as configured in the environment, or read from a Prefect Secret block the environment names.

A value `{{ prefect.blocks.secret.NAME }}` (Prefect's own templating syntax for block references) stands for
the value of the Secret block NAME, so an environment (a compose file, a worker's job variables) need not
carry the secret itself. Anything else is the secret itself.
"""

from __future__ import annotations

import re

from pydantic import SecretStr

BLOCK_REFERENCE = re.compile(r"^\{\{\s*prefect\.blocks\.secret\.([a-z0-9][a-z0-9-]*)\s*\}\}$")


class SecretBlockMissing(RuntimeError):
    """A configured Prefect Secret block reference that the Prefect server cannot resolve."""


def block_name(value: str) -> str | None:
    """NAME of a `{{ prefect.blocks.secret.NAME }}` reference; None for a plain secret."""
    m = BLOCK_REFERENCE.match(value.strip())
    return m.group(1) if m else None


def reveal(value: SecretStr | str) -> str:
    """The secret itself (read from its Prefect Secret block when `value` references one)."""
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    name = block_name(raw)
    if name is None:
        return raw
    from prefect.blocks.system import Secret

    try:
        secret: Secret = Secret.load(name, _sync=True)  # type: ignore[call-arg,assignment]
    except ValueError as e:  # Prefect: "Unable to find block document named ..."
        raise SecretBlockMissing(f"Prefect Secret block {name!r} (configured as {raw!r}) cannot be read: {e}") from e
    return str(secret.get())
