"""A local lakeFS-compatible server.

No lakeFS binary can be installed where lakeloop runs, so this package serves
the subset of the lakeFS v1 REST API that the official Python SDK uses, with
lakeFS's semantics (commits, refs, three-way merge, hooks), backed by SQLite
metadata and content-addressed blobs on local disk.
"""

from infra.lakefs_server.serve import serve

__all__ = ["serve"]
