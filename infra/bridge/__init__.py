"""lakeloop bridge: lakeFS / Label Studio webhooks -> Prefect events (see app.py)."""

from infra.bridge.lakefs_actions import ACTIONS_FILE, TOKEN_HEADER, render_actions_yaml

__all__ = ["ACTIONS_FILE", "TOKEN_HEADER", "render_actions_yaml"]
