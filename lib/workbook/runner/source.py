"""Which code a run was made from: the git commit, whether the tree was dirty, and a `tree`
id that is the same for two runs exactly when they ran the same code.

A check that flips between pass and fail is flaky only if nothing changed in between; two
runs of one commit with different uncommitted edits did not run the same code. So a dirty
tree's id is the commit plus a hash of the diff against it and of the untracked files.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    commit: str = ""  # empty: not a git checkout (or git missing)
    dirty: bool = False
    tree: str = ""

    @property
    def short(self) -> str:
        return self.commit[:10] + ("+dirty" if self.dirty else "") if self.commit else "unknown commit"


def _git(root: Path, *args: str) -> bytes | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def source_of(root: Path) -> Source:
    head = _git(root, "rev-parse", "--verify", "HEAD")
    if not head:
        return Source()
    commit = head.decode().strip()
    diff = _git(root, "diff", "HEAD", "--binary") or b""
    untracked = (_git(root, "ls-files", "--others", "--exclude-standard", "-z") or b"").split(b"\0")
    untracked = [name for name in untracked if name]
    if not diff and not untracked:
        return Source(commit=commit, dirty=False, tree=commit)
    h = hashlib.sha256(diff)
    for name in sorted(untracked):
        h.update(b"\0" + name + b"\0")
        try:
            h.update((root / name.decode(errors="surrogateescape")).read_bytes())
        except OSError:
            continue
    return Source(commit=commit, dirty=True, tree=f"{commit}+{h.hexdigest()[:12]}")
