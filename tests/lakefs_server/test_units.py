"""Unit tests of the pure parts: ref parsing, merge rules, action files, pagination."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest

from infra.lakefs_server import hooks as actions
from infra.lakefs_server import listing, merge, refs
from infra.lakefs_server.errors import ApiError


def test_parse_ref_expressions() -> None:
    assert refs.parse("main") == ("main", [])
    assert refs.parse("main~") == ("main", [("~", 1)])
    assert refs.parse("main~3^2") == ("main", [("~", 3), ("^", 2)])
    assert refs.parse("main@") == ("main", [("@", 0)])
    assert refs.parse("main$") == ("main", [("$", 0)])
    for bad in ("main@~1", "main~1@", "@", "main~x"):
        with pytest.raises(ApiError) as e:
            refs.parse(bad)
        assert e.value.status == 400


def _e(ident: str) -> dict[str, object]:
    return {"identity": ident, "size": 1}


def test_three_way_merge_rules() -> None:
    base = {"same": _e("0"), "src": _e("0"), "dst": _e("0"), "both": _e("0"), "gone": _e("0")}
    source = {"same": _e("0"), "src": _e("1"), "dst": _e("0"), "both": _e("s"), "new": _e("n")}
    dest = {"same": _e("0"), "src": _e("0"), "dst": _e("2"), "both": _e("d"), "gone": _e("0")}
    out = merge.three_way(base, source, dest, None)
    assert out.conflicts == ["both"]
    out = merge.three_way(base, source, dest, "dest-wins")
    assert {k: v["identity"] for k, v in out.tree.items()} == {
        "same": "0",
        "src": "1",
        "dst": "2",
        "both": "d",
        "new": "n",
    }
    out = merge.three_way(base, source, dest, "source-wins")
    assert out.tree["both"]["identity"] == "s" and "gone" not in out.tree
    # Identical changes on both sides are not a conflict.
    assert merge.three_way({}, {"x": _e("1")}, {"x": _e("1")}, None).conflicts == []


def test_merge_base_prefers_highest_generation() -> None:
    graph = {"r": ([], 1), "a": (["r"], 2), "b": (["a"], 3), "c": (["a"], 3), "m": (["b", "c"], 4), "d": (["b"], 4)}
    assert merge.merge_base(lambda c: graph[c], "m", "d") == "b"
    assert merge.merge_base(lambda c: graph[c], "c", "d") == "a"


def test_action_on_key_survives_yaml_1_1() -> None:
    doc = b"""
name: gate
on:
  pre-merge:
    branches: [main, "release-*"]
  post-commit:
hooks:
  - id: check
    type: webhook
    properties: {url: "http://x"}
"""
    a = actions.parse_action("_lakefs_actions/gate.yaml", doc)
    assert a.on == {"pre-merge": ["main", "release-*"], "post-commit": None}
    assert actions.matching([a], "pre-merge", "release-1") == [a]
    assert actions.matching([a], "pre-merge", "dev") == []
    assert actions.matching([a], "post-commit", "anything") == [a]
    with pytest.raises(actions.ActionError):
        actions.parse_action("x", b"name: n\non: {nope: }\nhooks: [{id: h1, type: webhook, properties: {url: u}}]")
    with pytest.raises(actions.ActionError):
        actions.parse_action("x", b"on: {post-commit: }\nhooks: []")


def test_env_expansion_and_durations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEFSACTION_TOKEN", "t0k")
    monkeypatch.setenv("OTHER", "leak")
    assert actions._expand("Bearer {{ ENV.LAKEFSACTION_TOKEN }}") == "Bearer t0k"
    assert actions._expand("{{ENV.OTHER}}") == ""
    with pytest.raises(actions.ActionError):
        actions._expand("{{ ENV.LAKEFSACTION_MISSING }}")
    assert actions.parse_duration("1m30s") == 90
    assert actions.parse_duration("500ms") == 0.5
    assert actions.parse_duration(None) == 60


def test_paginate_and_fold() -> None:
    items = [(p, p) for p in ["a/1", "a/2", "b", "c/x/y", "c/z"]]
    folded = list(listing.fold(items, "", "/"))
    assert [k for k, _ in folded] == ["a/", "b", "c/"]
    page = listing.paginate(folded, lambda i: i[0], lambda i: {"path": i[0]}, "", 2)
    assert [r["path"] for r in page["results"]] == ["a/", "b"]
    assert page["pagination"] == {"has_more": True, "next_offset": "b", "results": 2, "max_per_page": 1000}
    page = listing.paginate(folded, lambda i: i[0], lambda i: {"path": i[0]}, "b", 2)
    assert page["pagination"]["has_more"] is False and page["pagination"]["next_offset"] == ""
    assert listing.amount_of(None) == 100 and listing.amount_of("-1") == 100
    with pytest.raises(ApiError):
        listing.amount_of("5000")


def test_three_dot_diff_is_what_a_merge_would_bring() -> None:
    base = {"left-only": _e("0"), "right-only": _e("0"), "both": _e("0"), "same": _e("0"), "gone": _e("0")}
    left = {"left-only": _e("L"), "right-only": _e("0"), "both": _e("L"), "same": _e("S"), "gone": _e("0")}
    right = {"left-only": _e("0"), "right-only": _e("R"), "both": _e("R"), "same": _e("S"), "new": _e("N")}
    got = [(k, p) for k, p, _ in merge.three_dot(base, left, right)]
    assert got == [("conflict", "both"), ("removed", "gone"), ("added", "new"), ("changed", "right-only")]


def test_credentials_come_from_args_then_env_then_are_generated(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.lakefs_server.serve import resolve_credentials

    monkeypatch.setenv("LAKEFS_ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("LAKEFS_SECRET_ACCESS_KEY", "env-secret")
    assert resolve_credentials("arg-key", "arg-secret") == ("arg-key", "arg-secret", False)
    assert resolve_credentials(None, None) == ("env-key", "env-secret", False)
    monkeypatch.delenv("LAKEFS_ACCESS_KEY_ID")
    monkeypatch.delenv("LAKEFS_SECRET_ACCESS_KEY")
    key, secret, generated = resolve_credentials(None, None)
    assert generated and key.startswith("AKIA") and len(secret) >= 30


def test_uploads_racing_commits_are_never_lost(tmp_path: Path) -> None:
    """A commit clears only the staging rows it consumed; concurrent uploads stay staged."""
    from infra.lakefs_server.service import LakeFS
    from infra.lakefs_server.store import Store

    svc = LakeFS(Store(tmp_path))
    svc.create_repo("race-repo", "local://race", "main", False)
    paths = [f"p/{i:03d}" for i in range(150)]
    done = threading.Event()

    def upload() -> None:
        for p in paths:
            w = svc.store.new_blob_writer()
            w.write(p.encode())
            svc.put_object("race-repo", "main", p, w, "application/octet-stream", {}, False)
        done.set()

    def commit() -> None:
        while not done.is_set():
            with contextlib.suppress(ApiError):  # "no changes" when the uploader is between writes
                svc.commit_branch("race-repo", "main", "tick", {}, False, None)

    threads = [threading.Thread(target=upload), threading.Thread(target=commit)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    with contextlib.suppress(ApiError):
        svc.commit_branch("race-repo", "main", "last", {}, False, None)
    listed = svc.list_objects("race-repo", "main@", "p/", "", 1000, "", False)
    assert [o["path"] for o in listed["results"]] == paths
    assert svc.diff_branch("race-repo", "main", "", "", 100, "")["results"] == []


def test_uvicorn_still_has_the_receive_window_knob() -> None:
    """serve() widens uvicorn's body buffer through a module constant; an upgrade that drops it must be noticed."""
    from uvicorn.protocols.http import h11_impl

    from infra.lakefs_server.serve import RECEIVE_WINDOW, _large_receive_window

    assert isinstance(h11_impl.HIGH_WATER_LIMIT, int)
    before = h11_impl.HIGH_WATER_LIMIT
    try:
        _large_receive_window()
        assert h11_impl.HIGH_WATER_LIMIT >= RECEIVE_WINDOW
    finally:
        h11_impl.HIGH_WATER_LIMIT = before
