"""The lakeFS actions file that points lakeFS at the bridge.

`lakeloop up` installs it with `Lake.install_actions(branch, ACTIONS_FILE, yaml)`.
lakeFS reads one action per file and runs every hook of an action for every
event in its `on:`, so the single action has two hooks and each bridge endpoint
answers 200 "ignored" to the event types that belong to the other one. The
token (the bridge's lakeFS secret, never Label Studio's) is not written into the
repository: lakeFS substitutes `{{ ENV.LAKEFSACTION_... }}` from its own
environment when it calls the hook, and masks it in the hook's output. It travels
as a header, not a query parameter, so no URL in any log carries it.
"""

from __future__ import annotations

from collections.abc import Sequence

import yaml

from infra.bridge.auth import TOKEN_HEADER
from lakeloop.settings import Settings

ACTIONS_FILE = "lakeloop.yaml"
DEFAULT_TOKEN_ENV = "LAKEFSACTION_LAKELOOP_TOKEN"


def render_actions_yaml(
    bridge_url: str,
    branches: Sequence[str] | None = None,
    *,
    protected: Sequence[str] = ("main",),
    token_env: str = DEFAULT_TOKEN_ENV,
    timeout: str = "30s",
) -> str:
    """The action YAML: post-commit/post-merge on `branches` (None: all) -> /lakefs/events,
    pre-merge into `protected` -> /lakefs/pre-merge, token header from lakeFS's env `token_env`."""
    if not token_env.startswith("LAKEFSACTION_"):
        raise ValueError(f"{token_env}: lakeFS only substitutes env vars prefixed LAKEFSACTION_")
    base = bridge_url.rstrip("/")
    headers = {TOKEN_HEADER: "{{ ENV." + token_env + " }}"}
    on_post = {"branches": list(branches)} if branches else None
    on: dict[str, object] = {"post-commit": on_post, "post-merge": on_post}
    if protected:
        on["pre-merge"] = {"branches": list(protected)}
    action = {
        "name": "lakeloop",
        "description": "Relay commits and merges to Prefect through the lakeloop bridge, and block merges "
                       "into protected branches whose data breaks the dataset spec.",
        "on": on,
        "hooks": [
            {"id": "lakeloop_relay", "type": "webhook",
             "description": "post-commit / post-merge -> Prefect event (ignores pre-merge)",
             "properties": {"url": f"{base}/lakefs/events", "timeout": timeout, "headers": headers}},
            {"id": "lakeloop_merge_gate", "type": "webhook",
             "description": "pre-merge: schema + content checks of the changed data (ignores post events)",
             "properties": {"url": f"{base}/lakefs/pre-merge", "timeout": "60s", "headers": headers}},
        ],
    }
    return yaml.safe_dump(action, sort_keys=False)


def settings_actions_yaml(s: Settings) -> str:
    """The file `lakeloop up` installs for these settings (and `lakeloop doctor` expects): the watched and
    experiment branches' commits and merges go to the bridge, merges into the watched branches are gated."""
    from lakeloop.branches import BranchPolicy

    policy = BranchPolicy.from_settings(s)
    return render_actions_yaml(s.bridge.url, policy.hook_branches(), protected=policy.watched)
