"""Bounded schemathesis fuzzing of a live HTTP service, shared by the fuzz tests and bench/bench_fuzz.py.

Each operation of an OpenAPI document gets `max_examples` cases, half positive (valid by the schema)
and half negative (schemathesis' invalid values), sent over real HTTP. Most cases carry valid
credentials, so they get past authentication and reach the handlers; some carry hostile ones
(non-ASCII, not base64, not UTF-8). Path parameters, query parameters and body fields can be steered
towards values the service knows (a real repository, branch or commit), so a case exercises the code
behind the 404 as well as the 404.

An answer is acceptable when it is a 2xx/3xx, or a 4xx whose JSON body carries a non-empty message,
or a 501 that says what is not implemented (the local lakeFS server's documented answer for lakeFS
features it does not serve). A 5xx otherwise, a 4xx without a clear message, or no answer at all
(connection reset, timeout) is a failure.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.schemas import BaseSchema

from infra.procs import free_port

HOSTILE_CREDENTIALS = [
    "ключ:секрет".encode(), "AKIAÄ:sécret".encode(), b"\xff\xfe:\x80", b"no-colon", b"", "\u0000:\u202e".encode(),
]
"""Basic-auth user:password bytes that must be refused with a 401, never a 500."""
# (header values given as bytes go on the wire as they are: http.client would refuse non-latin-1 str)


@dataclass(frozen=True)
class Failure:
    operation: str
    status: int | None
    reason: str
    request: str

    def __str__(self) -> str:
        return f"{self.operation}: {self.reason} (status {self.status})\n    {self.request}"


@dataclass
class FuzzReport:
    """What a run sent and got: cases per status class, and every unacceptable answer."""

    operations: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def cases(self) -> int:
        return sum(self.statuses.values()) + sum(f.status is None for f in self.failures)

    def figures(self) -> dict[str, Any]:
        by_class = Counter(f"{s // 100}xx" for s in self.statuses.elements())
        return {"cases": self.cases, "failures": len(self.failures), "operations": len(self.operations),
                "statuses": dict(sorted(by_class.items())), "not_implemented_501": self.statuses.get(501, 0),
                "seconds": round(self.seconds, 1)}

    def summary(self) -> str:
        head = f"{self.cases} cases over {len(self.operations)} operations, {len(self.failures)} failures"
        return "\n".join([head, *map(str, self.failures[:20])])


def basic_auth(user: str | bytes, password: str | bytes = b"") -> str:
    raw = user if isinstance(user, bytes) else f"{user}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def clear_message(resp: requests.Response, keys: Sequence[str]) -> bool:
    try:
        body = resp.json()
    except ValueError:
        return False
    return isinstance(body, dict) and any(isinstance(body.get(k), str) and body[k].strip() for k in keys)


def judge(method: str, resp: requests.Response, message_keys: Sequence[str]) -> str | None:
    """Why this answer is unacceptable (None: it is acceptable)."""
    status = resp.status_code
    if status == 501:
        return None if "not implemented" in resp.text else "501 without saying what is not implemented"
    if status >= 500:
        return f"server error: {resp.text[:300]}"
    if 400 <= status < 500 and method != "HEAD" and not clear_message(resp, message_keys):
        return f"4xx without a {' or '.join(message_keys)} message: {resp.text[:300]!r}"
    return None


def _choices(known: Mapping[str, Sequence[Any]], names: Sequence[str]) -> st.SearchStrategy[dict[str, Any]]:
    """For each name with known values: None (keep what schemathesis generated) or, twice as likely, one of them."""
    return st.fixed_dictionaries({n: st.sampled_from([None, *known[n], *known[n]]) for n in names if n in known})


def fuzz(
    schema: BaseSchema,
    base_url: str,
    *,
    auth_header: str,
    auth_value: str,
    hostile_auth: Sequence[str | bytes] = (),
    message_key: Sequence[str] = ("message",),
    max_examples: int = 6,
    include: Callable[[str, str], bool] = lambda method, path: True,
    path_parameters: Mapping[str, Sequence[str]] | None = None,
    query: Mapping[str, Sequence[str]] | None = None,
    body: Mapping[str, Sequence[Any]] | None = None,
    unsteered: Sequence[tuple[str, str]] = (),
    timeout: float = 15.0,
) -> FuzzReport:
    """Fuzz every included operation of `schema` at `base_url` and judge every answer.

    `unsteered` operations (method, path) keep generated path parameters: e.g. DELETE of the repository
    whose contents are checked afterwards."""
    report = FuzzReport()
    session = requests.Session()
    t0 = time.perf_counter()
    for result in schema.get_all_operations():
        op = result.ok()
        method = op.method.upper()
        if not include(method, op.path):
            continue
        name = f"{method} {op.path}"
        report.operations.append(name)
        path_names = [p.name for p in op.path_parameters] if (method, op.path) not in unsteered else []
        query_names = [p.name for p in op.query]
        cases = op.as_strategy(generation_mode=GenerationMode.POSITIVE) | op.as_strategy(
            generation_mode=GenerationMode.NEGATIVE)
        auths = st.sampled_from([auth_value] * (4 * len(hostile_auth) or 1) + list(hostile_auth))  # 1 in 5 hostile

        @given(case=cases, steer_path=_choices(path_parameters or {}, path_names),
               steer_query=_choices(query or {}, query_names), steer_body=_choices(body or {}, list(body or {})),
               auth=auths, name=st.just(name), method=st.just(method))
        @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def one(case: Any, steer_path: dict[str, Any], steer_query: dict[str, Any], steer_body: dict[str, Any],
                auth: str | bytes, name: str, method: str) -> None:
            for k, v in steer_path.items():
                if v is not None:
                    case.path_parameters[k] = v
            for k, v in steer_query.items():
                if v is not None and isinstance(case.query, dict):
                    case.query[k] = v
            for k, v in steer_body.items():
                if v is not None and isinstance(case.body, dict):
                    case.body[k] = v
            try:  # (headers given to call() are sent as they are, after the generated ones)
                resp = case.call(base_url=base_url, session=session, headers={auth_header: auth}, timeout=timeout)
            except requests.RequestException as e:
                report.failures.append(Failure(name, None, f"no answer: {type(e).__name__}: {e}",
                                               case.as_curl_command()))
                return
            report.statuses[resp.status_code] += 1
            why = judge(method, resp, message_key)
            if why is not None:
                report.failures.append(Failure(name, resp.status_code, why, case.as_curl_command()))

        one()
    report.seconds = time.perf_counter() - t0
    return report


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """An ASGI app on a loopback port (real HTTP through uvicorn), for as long as the block runs."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
