"""Basic auth of the local lakeFS server: any Authorization header is a 401 or a pass, never a 500."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from infra.lakefs_server.app import build_app

KEY, SECRET = "AKIAAUTHTEST", "auth-secret"


def basic(raw: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return TestClient(build_app(tmp_path / "lakefs", KEY, SECRET), raise_server_exceptions=False)


@pytest.mark.parametrize("raw", [
    "ключ:секрет".encode(),  # non-ASCII user and password (hmac.compare_digest refuses non-ASCII str)
    f"{KEY}:sécret".encode(),  # non-ASCII password only
    "AKIAÄUTH:auth-secret".encode(),
    b"\xff\xfe:\x80",  # not UTF-8
    b"no-colon-at-all",
    b"",
], ids=["cyrillic", "accented-secret", "accented-key", "not-utf8", "no-colon", "empty"])
def test_wrong_credentials_of_any_shape_are_401(client: TestClient, raw: bytes) -> None:
    for path in ("/api/v1/repositories", "/api/v1/auth/users"):  # a served route and the 501 fallback
        r = client.get(path, headers=basic(raw))
        assert r.status_code == 401, (path, r.status_code, r.text)
        assert r.json() == {"message": "error authenticating request"}


@pytest.mark.parametrize("header", [b"Basic !!!not-base64!!!", b"Basic", b"Bearer abc", "Basic é€".encode()])
def test_malformed_authorization_headers_are_401(client: TestClient, header: bytes) -> None:
    r = client.get("/api/v1/repositories", headers={"Authorization": header})
    assert r.status_code == 401, r.text


def test_non_ascii_credentials_that_match_are_accepted(tmp_path: Path) -> None:
    key, secret = "AKIA-ключ", "sécret-ü"
    c = TestClient(build_app(tmp_path / "lakefs", key, secret), raise_server_exceptions=False)
    assert c.get("/api/v1/repositories", headers=basic(f"{key}:{secret}".encode())).status_code == 200
    assert c.get("/api/v1/repositories", headers=basic(f"{key}:{secret}x".encode())).status_code == 401
