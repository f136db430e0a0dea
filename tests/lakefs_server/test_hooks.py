"""lakeFS actions through the SDK: pre-merge gates, post-commit payloads, run records."""

from __future__ import annotations

import time
from collections.abc import Callable

import lakefs
import pytest
from lakefs.exceptions import ServerException

from tests.lakefs_server.conftest import WebhookReceiver, parquet_bytes, wait_for_runs

pytestmark = pytest.mark.integration

POST_COMMIT_ACTION = """
name: notify mlops on commit
description: tell the loop about new data
on:
  post-commit:
    branches: ["ingest-*"]
hooks:
  - id: notify_mlops
    type: webhook
    properties:
      url: "{url}"
      timeout: 5s
      query_params:
        source: lakefs
        token: "{{{{ ENV.LAKEFSACTION_LAKELOOP_TEST_TOKEN }}}}"
      headers:
        X-Token: "{{{{ ENV.LAKEFSACTION_LAKELOOP_TEST_TOKEN }}}}"
"""

PRE_MERGE_ACTION = """
name: validate before merge
on:
  pre-merge:
    branches: [main]
hooks:
  - id: validate
    type: webhook
    properties:
      url: "{url}"
"""


def test_post_commit_webhook_gets_lakefs_payload(
    new_repo: Callable[[], lakefs.Repository], webhook: WebhookReceiver, client: lakefs.Client
) -> None:
    repo = new_repo()
    branch = repo.branch("ingest-2026-07-23").create(source_reference="main")
    branch.object("_lakefs_actions/notify.yaml").upload(data=POST_COMMIT_ACTION.format(url=webhook.url("/post")))
    branch.object("data/batch.parquet").upload(data=parquet_bytes(50))
    ref = branch.commit(message="ingest batch 1", metadata={"rows": "50", "run_id": "42"})
    done = time.monotonic()
    commit_id = ref.get_commit().id

    got = webhook.wait_for(lambda r: r.path.startswith("/post") and r.json().get("commit_id") == commit_id, 1.0)
    assert got is not None, "post-commit webhook not received within a second"
    assert got.at - done < 1.0
    payload = got.json()
    assert list(payload) == [
        "event_type",
        "event_time",
        "action_name",
        "hook_id",
        "repository_id",
        "branch_id",
        "source_ref",
        "commit_id",
        "commit_message",
        "committer",
        "commit_metadata",
    ]
    assert payload["event_type"] == "post-commit"
    assert payload["action_name"] == "notify mlops on commit"
    assert payload["hook_id"] == "notify_mlops"
    assert payload["repository_id"] == repo.id
    assert payload["branch_id"] == "ingest-2026-07-23"
    assert payload["source_ref"] == commit_id
    assert payload["commit_message"] == "ingest batch 1"
    assert payload["committer"] == "admin"
    assert payload["commit_metadata"] == {"rows": "50", "run_id": "42"}
    assert payload["event_time"].endswith("Z") and len(payload["event_time"]) == 20
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["X-Token"] == "lakeloop-hook-secret"
    assert "source=lakefs" in got.path

    # The run is recorded and listable.
    runs = wait_for_runs(client, repo.id, lambda r: r.commit_id == commit_id and r.status == "completed")
    assert runs and runs[0].event_type == "post-commit"
    hooks = client.sdk_client.actions_api.list_run_hooks(repo.id, runs[0].run_id).results
    assert [(h.action, h.hook_id, h.status) for h in hooks] == [("notify mlops on commit", "notify_mlops", "completed")]
    # a value from the environment is sent, and masked in the hook's output as lakeFS masks it
    assert "token=lakeloop-hook-secret" in got.path
    output = client.sdk_client.actions_api.get_run_hook_output(repo.id, runs[0].run_id, hooks[0].hook_run_id)
    text = output.decode() if isinstance(output, bytes) else str(output)
    assert "source=lakefs&token=*******" in text and "lakeloop-hook-secret" not in text

    # Branch filter: a commit on a branch not matching `ingest-*` fires nothing.
    other = repo.branch("scratch").create(source_reference=branch.id)
    other.object("x").upload(data=b"x")
    other_id = other.commit(message="scratch").get_commit().id
    assert webhook.wait_for(lambda r: r.json().get("commit_id") == other_id, 0.5) is None


def test_pre_merge_webhook_400_blocks_merge(
    new_repo: Callable[[], lakefs.Repository], webhook: WebhookReceiver
) -> None:
    repo = new_repo()
    webhook.statuses["/reject"] = 400
    main = repo.branch("main")
    feature = repo.branch("feature").create(source_reference="main")
    feature.object("_lakefs_actions/gate.yaml").upload(data=PRE_MERGE_ACTION.format(url=webhook.url("/reject")))
    feature.object("data/bad.parquet").upload(data=parquet_bytes(5))
    source_id = feature.commit(message="bad data").get_commit().id
    head_before = main.get_commit().id

    with pytest.raises(ServerException) as exc:
        feature.merge_into(main)
    assert exc.value.status_code == 412
    assert main.get_commit().id == head_before
    assert [o.path for o in main.objects()] == []

    got = webhook.wait_for(lambda r: r.path == "/reject" and r.json().get("source_ref") == source_id, 1.0)
    assert got is not None
    payload = got.json()
    assert payload["event_type"] == "pre-merge"
    assert payload["branch_id"] == "main"
    assert payload["merge_source"] == "feature"
    assert payload["commit_metadata"] == {".lakefs.merge.strategy": "default"}

    # Once the gate answers 2xx the same merge goes through.
    webhook.statuses["/reject"] = 200
    merged = feature.merge_into(main)
    assert main.get_commit().id == merged


def test_pre_commit_webhook_sees_staged_action_and_blocks(
    new_repo: Callable[[], lakefs.Repository], webhook: WebhookReceiver
) -> None:
    repo = new_repo()
    webhook.statuses["/pre-commit-no"] = 403
    main = repo.branch("main")
    action = PRE_MERGE_ACTION.replace("pre-merge", "pre-commit").format(url=webhook.url("/pre-commit-no"))
    main.object("_lakefs_actions/pc.yaml").upload(data=action)
    head = main.get_commit().id
    with pytest.raises(ServerException) as exc:
        main.commit(message="blocked")
    assert exc.value.status_code == 412
    assert main.get_commit().id == head
    assert len(list(main.uncommitted())) == 1
    got = webhook.wait_for(lambda r: r.path == "/pre-commit-no", 1.0)
    assert got is not None
    payload = got.json()
    assert payload["source_ref"] == "main" and "commit_id" not in payload


def test_branch_create_and_delete_hooks(new_repo: Callable[[], lakefs.Repository], webhook: WebhookReceiver) -> None:
    repo = new_repo()
    main = repo.branch("main")
    action = """
name: branch lifecycle
on:
  pre-create-branch:
    branches: ["blocked-*"]
  post-delete-branch:
hooks:
  - id: lifecycle
    type: webhook
    properties:
      url: "{url}"
""".format(url=webhook.url("/branch-life"))
    webhook.statuses["/branch-life"] = 500
    main.object("_lakefs_actions/life.yaml").upload(data=action)
    main.commit(message="add lifecycle action")
    with pytest.raises(ServerException) as exc:
        repo.branch("blocked-1").create(source_reference="main")
    assert exc.value.status_code == 412
    assert "blocked-1" not in {b.id for b in repo.branches()}
    tmp = repo.branch("tmp-1").create(source_reference="main")
    tmp.delete()
    got = webhook.wait_for(lambda r: r.path == "/branch-life" and r.json()["event_type"] == "post-delete-branch", 1.0)
    assert got is not None and got.json()["branch_id"] == "tmp-1"
