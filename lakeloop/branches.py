"""Which branch a commit is on decides what it may change: the trust boundary of the loop.

lakeFS exists so people can branch data and try things safely. Only the watched
branches (default: the repository's default branch) drive production: their
commits may retrain and move the `champion` alias. A branch matching an
experiment pattern runs an experiment: a candidate trained on the branch, judged
on the watched branch's trusted holdout, reported, never aliased. Every other
branch starts nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from lakeloop.settings import Settings

Role = Literal["watched", "experiment", "ignored"]


@dataclass(frozen=True)
class BranchPolicy:
    watched: tuple[str, ...]
    experiments: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> BranchPolicy:
        watched = tuple(settings.branches.watched) or (settings.lakefs.default_branch,)
        return cls(watched=watched, experiments=tuple(settings.branches.experiments))

    def role(self, branch: str) -> Role:
        if branch in self.watched:
            return "watched"
        if any(fnmatchcase(branch, p) for p in self.experiments):
            return "experiment"
        return "ignored"

    def relayed(self, branch: str) -> bool:
        """Commits on this branch are worth an event (the webhooks and the reconciler use this)."""
        return self.role(branch) != "ignored"

    @property
    def trusted(self) -> str:
        """The branch whose data judges candidates: the first watched branch."""
        return self.watched[0]

    def hook_branches(self) -> list[str]:
        """`on: branches:` of the lakeFS actions file (lakeFS matches globs there too)."""
        return [*self.watched, *self.experiments]
