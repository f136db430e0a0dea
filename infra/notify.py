"""Notifications: Prefect automations that post to a Slack-compatible webhook (`LAKELOOP_NOTIFY_WEBHOOK_URL`).

One webhook block and one automation per event a team wants to hear about: a flow run that failed or
crashed, a challenger the gate refused, a model promoted, drift detected. Each message links to the
flow run in the Prefect UI. The automations run in the Prefect server's triggers and actions services;
`apply_notifications` replaces them by name, so deploying twice leaves one of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from lakeloop import events

BLOCK_NAME = "lakeloop-notify"
RUN_LINK = "Run: {{ flow_run|ui_url }}"


@dataclass(frozen=True)
class Notification:
    name: str
    expect: tuple[str, ...]
    match: str  # resource id pattern
    subject: str
    body: str


NOTIFICATIONS = (
    Notification("lakeloop: flow run failed", ("prefect.flow-run.Failed", "prefect.flow-run.Crashed"),
                 "prefect.flow-run.*", "lakeloop: flow run {{ event.resource['prefect.state-name'] }}",
                 "{{ flow.name }} run {{ flow_run.name }} ended {{ event.resource['prefect.state-name'] }}: "
                 "{{ event.resource['prefect.state-message'] }}"),
    Notification("lakeloop: gate refused", (events.GATE_REFUSED,), "lakeloop.model.*",
                 "lakeloop: {{ event.payload.model_name }} v{{ event.payload.version }} not promoted",
                 "The gate kept v{{ event.payload.champion }} as champion: "
                 "{{ event.payload.reasons | join('; ') }}"),
    Notification("lakeloop: model promoted", (events.MODEL_PROMOTED,), "lakeloop.model.*",
                 "lakeloop: {{ event.payload.model_name }} v{{ event.payload.version }} is champion",
                 "{{ event.payload.model_name }} v{{ event.payload.version }} ({{ event.payload.kind }}) promoted "
                 "to champion on {{ event.payload.repository }}@{{ (event.payload.commit_id or '')[:12] }}"),
    Notification("lakeloop: drift detected", (events.DRIFT_DETECTED,), "lakeloop.dataset.*",
                 "lakeloop: drift on {{ event.payload.repository }}/{{ event.payload.branch }}",
                 "{{ event.payload.reasons | join('; ') }}"),
)


def apply_notifications(webhook_url: str) -> list[str]:
    """Create (or replace) the webhook block and the automations on the current Prefect API; their names."""
    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    block = CustomWebhookNotificationBlock(name=BLOCK_NAME, url=webhook_url, method="POST",
                                           json_data={"text": "{{subject}}\n{{body}}"}, headers=None, cookies=None)
    block_id = UUID(str(block.save(BLOCK_NAME, overwrite=True)))
    with get_client(sync_client=True) as client:
        for n in NOTIFICATIONS:
            for old in client.read_automations_by_name(n.name):
                client.delete_automation(old.id)
            Automation(
                name=n.name, description="lakeloop notification (infra/notify.py)",
                trigger=EventTrigger(match={"prefect.resource.id": n.match}, expect=set(n.expect),
                                     posture=Posture.Reactive, threshold=1, within=timedelta(0)),
                actions=[SendNotification(block_document_id=block_id, subject=n.subject,
                                          body=f"{n.body}\n{RUN_LINK}")],
            ).create()
    return [n.name for n in NOTIFICATIONS]
