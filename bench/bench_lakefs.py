"""Bench: the local lakeFS server through the official SDK vs plain file copies of the same bytes.

Starts the server as a subprocess (as `lakeloop up` does), uploads and commits N
parquet files of a few MB one by one, reads them back, and copies the same
files with shutil.copy for a baseline. Prints MB/s and ratios, writes
bench/out/lakefs.json and merges key `lakefs` into bench/results.json.
Beside the wall-clock ratios (noisy on a shared machine) it records the CPU
each side spent per MB (server process and SDK client), the same upload with
the SDK's `pre_sign=False` (skips the repository lookup `object.upload` makes
for every new object; lakeloop's `Lake` adapter now passes the answer it asked
for once), and md5 alone over the same bytes: lakeFS's checksum
is an md5 the server must compute before it answers, which bounds the ratio.
Run: `python -m bench.bench_lakefs [--files N] [--mb SIZE]`.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from infra.local.lakefs import start_lakefs
from infra.procs import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
KEY, SECRET = "AKIABENCHLAKEFS00001", "bench-secret"


def make_parquet(mb: float, seed: int) -> bytes:
    """Incompressible-ish numeric columns so the file really is about `mb` megabytes."""
    rng = np.random.default_rng(seed)
    rows = int(mb * 1024 * 1024 / 16)
    table = pa.table({"x": rng.random(rows), "y": rng.integers(0, 2**62, rows)})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="none")
    return buf.getvalue()


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process so far (from /proc; the server is a separate process)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--mb", type=float, default=4.0)
    a = ap.parse_args(argv)

    import lakefs

    blobs = [make_parquet(a.mb, i) for i in range(a.files)]
    total_mb = sum(len(b) for b in blobs) / 1e6

    with tempfile.TemporaryDirectory(prefix="bench-lakefs-") as tmp:
        tmpd = Path(tmp)
        port = free_port()
        svc = start_lakefs(tmpd, port, KEY, SECRET)  # the launcher `lakeloop up` uses
        try:
            client = lakefs.Client(host=f"http://127.0.0.1:{port}", username=KEY, password=SECRET)
            repo = lakefs.Repository("bench", client=client).create(
                storage_namespace=f"local://bench/{uuid.uuid4().hex}"
            )
            branch = repo.branch("ingest").create(source_reference="main")
            branch.object("warmup").upload(data=b"w")
            branch.commit(message="warmup")

            per_file: list[float] = []
            srv0, cli0 = cpu_seconds(svc.pid), time.process_time()
            t0 = time.perf_counter()
            for i, data in enumerate(blobs):
                t = time.perf_counter()
                branch.object(f"data/part-{i:03d}.parquet").upload(data=data, content_type="application/x-parquet")
                branch.commit(message=f"part {i}", metadata={"rows": str(len(data))})
                per_file.append(time.perf_counter() - t)
            upload_s = time.perf_counter() - t0
            server_cpu, client_cpu = cpu_seconds(svc.pid) - srv0, time.process_time() - cli0

            t0 = time.perf_counter()
            for i, data in enumerate(blobs):
                branch.object(f"nopresign/part-{i:03d}.parquet").upload(
                    data=data, content_type="application/x-parquet", pre_sign=False
                )
                branch.commit(message=f"part {i} (pre_sign=False)")
            nopresign_s = time.perf_counter() - t0

            t0 = time.perf_counter()
            for i, data in enumerate(blobs):
                with branch.object(f"data/part-{i:03d}.parquet").reader() as r:
                    got = r.read()
                assert got == data, f"part {i} read back differently"
            read_s = time.perf_counter() - t0
        finally:
            svc.stop(timeout=5)

        src, dst = tmpd / "src", tmpd / "dst"
        src.mkdir()
        dst.mkdir()
        for i, data in enumerate(blobs):
            (src / f"part-{i:03d}.parquet").write_bytes(data)
        t0 = time.perf_counter()
        for i in range(len(blobs)):
            shutil.copy(src / f"part-{i:03d}.parquet", dst / f"part-{i:03d}.parquet")
        copy_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for data in blobs:
            hashlib.md5(data, usedforsecurity=False).hexdigest()
        md5_s = time.perf_counter() - t0

    figures = {
        "files": a.files,
        "total_mb": round(total_mb, 2),
        "upload_commit_mb_s": round(total_mb / upload_s, 1),
        "read_mb_s": round(total_mb / read_s, 1),
        "file_copy_mb_s": round(total_mb / copy_s, 1),
        "upload_vs_copy": round(copy_s / upload_s, 4),
        "read_vs_copy": round(copy_s / read_s, 4),
        "upload_commit_s_per_file_median": round(statistics.median(per_file), 4),
        "upload_commit_s_per_file_max": round(max(per_file), 4),
        "server_cpu_ms_per_mb": round(server_cpu * 1000 / total_mb, 2),
        "client_cpu_ms_per_mb": round(client_cpu * 1000 / total_mb, 2),
        "upload_nopresign_vs_copy": round(copy_s / nopresign_s, 4),
        "md5_mb_s": round(total_mb / md5_s, 1),
        "md5_vs_copy": round(copy_s / md5_s, 4),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(),
    }
    print(f"{a.files} parquet files, {total_mb:.1f} MB total")
    print(
        f"  upload+commit via SDK : {figures['upload_commit_mb_s']:8.1f} MB/s "
        f"(median {figures['upload_commit_s_per_file_median'] * 1000:.0f} ms per file)"
    )
    print(f"  read via SDK          : {figures['read_mb_s']:8.1f} MB/s")
    print(f"  shutil.copy           : {figures['file_copy_mb_s']:8.1f} MB/s")
    print(f"  ratios vs copy        : upload {figures['upload_vs_copy']:.3f}, read {figures['read_vs_copy']:.3f}, "
          f"upload pre_sign=False {figures['upload_nopresign_vs_copy']:.3f}, md5 alone {figures['md5_vs_copy']:.3f}")
    print(f"  CPU per MB            : server {figures['server_cpu_ms_per_mb']} ms, "
          f"SDK client {figures['client_cpu_ms_per_mb']} ms (load {figures['load_avg_1m']}, {figures['cores']} cores)")

    sys.path.insert(0, str(REPO_ROOT))
    from bench.results_io import record

    print(f"wrote {record('lakefs', figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
