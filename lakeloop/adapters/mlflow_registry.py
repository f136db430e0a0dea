"""Model-registry aliases: challenger -> champion promotion, and rollback.

Why aliases: consumers load `models:/<name>@champion`, so moving an alias is the
whole deployment and moving it back is the whole rollback. The old champion is
kept under `previous` so a rollback needs no search through history.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"
EXPERIMENT_TAG = "lakeloop.experiment"  # "true": trained on an experiment branch, never champion
PROMOTED_TAG = "lakeloop.promoted_at"


# what MLflow answers for "no such model / alias": absent, not an error
MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


class RegistryError(RuntimeError):
    """An alias move that cannot be made; the message names the model and alias."""


@dataclass(frozen=True)
class AliasMove:
    """What an alias operation did: `champion` now points at `champion`; `previous` at `previous`."""

    name: str
    champion: str
    previous: str | None
    changed: bool

    def __str__(self) -> str:  # prints as the champion version (e.g. `lakeloop rollback`)
        return self.champion


def _client(client: MlflowClient | None) -> MlflowClient:
    return client or MlflowClient()


def alias_version(name: str, alias: str, client: MlflowClient | None = None) -> str | None:
    """The version an alias points to, or None when the alias (or the model) does not exist."""
    try:
        return str(_client(client).get_model_version_by_alias(name, alias).version)
    except MlflowException as e:
        if e.error_code in MISSING:
            return None
        raise


def champion_version(name: str, client: MlflowClient | None = None) -> str | None:
    return alias_version(name, CHAMPION, client)


def past_champions(name: str, client: MlflowClient | None = None, limit: int = 5,
                   exclude: set[str] | None = None) -> list[str]:
    """Versions that were champion once (newest first), at most `limit`: the gate's bar is the best of them."""
    if limit <= 0:
        return []
    c = _client(client)
    found = [str(mv.version) for mv in c.search_model_versions(f"name = '{name}'")
             if PROMOTED_TAG in (mv.tags or {}) and str(mv.version) not in (exclude or set())]
    return sorted(found, key=int, reverse=True)[:limit]


def is_experiment(name: str, version: str, client: MlflowClient | None = None) -> bool:
    return (_client(client).get_model_version(name, str(version)).tags or {}).get(EXPERIMENT_TAG) == "true"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def promote(name: str, version: str, client: MlflowClient | None = None) -> AliasMove:
    """Make `version` the champion; the old champion becomes `previous`; a `challenger` alias on it is removed."""
    c = _client(client)
    version = str(version)
    if is_experiment(name, version, c):  # raises a clear MlflowException for an unknown version
        raise RegistryError(f"model {name!r} v{version} was trained on an experiment branch; it is never champion")
    old = champion_version(name, c)
    if old == version:
        return AliasMove(name, version, alias_version(name, PREVIOUS, c), changed=False)
    c.set_registered_model_alias(name, CHAMPION, version)
    if old is not None:
        c.set_registered_model_alias(name, PREVIOUS, old)
        c.set_model_version_tag(name, old, "lakeloop.demoted_at", _now())
    if alias_version(name, CHALLENGER, c) == version:
        c.delete_registered_model_alias(name, CHALLENGER)
    c.set_model_version_tag(name, version, PROMOTED_TAG, _now())
    return AliasMove(name, version, old, changed=True)


def rollback(name: str, client: MlflowClient | None = None) -> AliasMove:
    """Restore the `previous` champion; the rolled-back version is tagged and `previous` is cleared.

    Clearing `previous` makes a second rollback an error rather than a flip back to the
    version that was just judged bad.
    """
    c = _client(client)
    prev = alias_version(name, PREVIOUS, c)
    if prev is None:
        raise RegistryError(f"model {name!r}: no '{PREVIOUS}' alias, nothing to roll back to")
    current = champion_version(name, c)
    c.set_registered_model_alias(name, CHAMPION, prev)
    c.delete_registered_model_alias(name, PREVIOUS)
    if current is not None and current != prev:
        c.set_model_version_tag(name, current, "lakeloop.rolled_back_at", _now())
    c.set_model_version_tag(name, prev, "lakeloop.restored_at", _now())
    return AliasMove(name, prev, None, changed=current != prev)


@dataclass(frozen=True)
class GateDecision:
    promoted: bool
    champion: str | None
    version: str
    reasons: list[str]
    stale: bool = False  # the champion moved after the gate read it: nothing changed, gate again


def apply_gate(result: Any, client: MlflowClient | None = None,
               lock: AbstractContextManager[Any] | None = None) -> GateDecision:
    """Act on a `tasks.model.gate.GateResult`: promote a passing challenger, leave a failing one as challenger.

    Promotion is compare-and-set: under `lock` (one promotion of this model at a time, across
    processes), the champion must still be the version the gate compared against
    (`result.champion_at_gate`); otherwise nothing moves and the decision is `stale`.
    A failing challenger keeps (or gets) the `challenger` alias and its gate tags, so
    the reasons stay visible in the registry next to the model.
    """
    c = _client(client)
    if result.passed:
        with lock or nullcontext():
            current = champion_version(result.model_name, c)
            if current != result.champion_at_gate:
                return GateDecision(False, current, result.version,
                                    [f"champion moved from v{result.champion_at_gate} to v{current} after the gate "
                                     "compared; gate again"], stale=True)
            move = promote(result.model_name, result.version, c)
        return GateDecision(True, move.champion, result.version, [])
    return refuse(result, list(result.reasons), c)


APPROVAL_TAG = "lakeloop.approval"  # `approved` | `rejected`; beside it `.approver`, `.reason`, `.at`


@dataclass(frozen=True)
class Approval:
    """A person's answer to "promote this challenger?" (a timeout is a rejection by nobody)."""

    approved: bool
    approver: str
    reason: str = ""


def record_approval(name: str, version: str, approval: Approval, client: MlflowClient | None = None) -> None:
    """The decision and who made it, as tags on the model version: the registry says who promoted what."""
    c = _client(client)
    for key, value in {APPROVAL_TAG: "approved" if approval.approved else "rejected",
                       f"{APPROVAL_TAG}.approver": approval.approver or "unknown",
                       f"{APPROVAL_TAG}.reason": approval.reason or "none", f"{APPROVAL_TAG}.at": _now()}.items():
        c.set_model_version_tag(name, str(version), key, value[:4900])


def refuse(result: Any, reasons: list[str], client: MlflowClient | None = None) -> GateDecision:
    """Not promoted: the version keeps (or gets) the `challenger` alias, as a failing gate leaves it."""
    c = _client(client)
    if alias_version(result.model_name, CHALLENGER, c) is None:
        c.set_registered_model_alias(result.model_name, CHALLENGER, result.version)
    return GateDecision(False, champion_version(result.model_name, c), result.version, reasons)
