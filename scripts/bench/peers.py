"""The peer queues (PgQueuer, Procrastinate, Celery, graphile-worker, pg-boss), measured in the same sitting
by the shared harness `shared/peers/run.sh` beside the main checkout (outside the project), read back from
its JSON results. Results older than this run are never quoted: ratios across sittings mean nothing."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import ROOT, log

PEER_ORDER = ("procrastinate", "pgqueuer", "pgqueuer-defaults", "celery", "graphile", "graphile-batched", "pg-boss")


def run_script() -> Path:
    """`$TASKQ_PEERS_RUN`, else `shared/peers/run.sh` beside the main checkout (`../shared/peers/run.sh` from
    it; from a worktree, found through git's common directory)."""
    if env := os.environ.get("TASKQ_PEERS_RUN"):
        return Path(env)
    try:
        common = subprocess.run(
            ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        main_checkout = Path(common).parent
    except (OSError, subprocess.CalledProcessError):
        main_checkout = ROOT
    return main_checkout.parent / "shared" / "peers" / "run.sh"


def results_dir() -> Path:
    return Path(os.environ.get("PEERBENCH_DIR", "/tmp/peerbench")) / "results"


@dataclass
class PeerRun:
    script: Path
    started: float  # time.time() when the peers' run began (0: not run)
    exit_code: int | None = None
    seconds: float = 0.0
    reps: int = 1
    note: str = ""
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # peer -> its results file, fresh ones only
    stale: list[str] = field(default_factory=list)  # result files present but older than this run

    def value(self, peer: str, key: str) -> float | None:
        """The median over the peer's runs, as the harness's own table shows it."""
        values = [r[key] for r in self.results[peer]["runs"] if r.get(key) is not None]
        return float(statistics.median(values)) if values else None


def run_peers(reps: int, log_path: Path) -> PeerRun:
    script = run_script()
    out = PeerRun(script, time.time(), reps=reps)
    if not script.exists():
        out.note = f"`{script}` does not exist (set TASKQ_PEERS_RUN to the harness's run.sh)"
        log(f"peers: {out.note}")
        return out
    log(f"peers: REPS={reps} {script} peers (several minutes; log in {log_path})")
    t0 = time.monotonic()
    with log_path.open("wb") as sink:
        try:
            done = subprocess.run(
                ["bash", str(script), "peers"],
                env={**os.environ, "REPS": str(reps)},
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=3600,
                check=False,
            )
            out.exit_code = done.returncode
        except subprocess.TimeoutExpired:
            out.note = "the peers' run did not finish within an hour"
    out.seconds = time.monotonic() - t0
    if out.exit_code not in (0, None):
        out.note = f"run.sh exited with {out.exit_code}; log tail: {log_path.read_text(errors='replace')[-600:]!r}"
        print(log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
    load(out)
    return out


def load(out: PeerRun) -> None:
    where = results_dir()
    for peer in PEER_ORDER:
        f = where / f"{peer}.json"
        if not f.exists():
            continue
        if out.started and f.stat().st_mtime >= out.started:
            out.results[peer] = json.loads(f.read_text())
        else:
            out.stale.append(f"{f.name} ({time.strftime('%Y-%m-%d %H:%M', time.gmtime(f.stat().st_mtime))} UTC)")


def not_run() -> PeerRun:
    """The peers were not asked for: only note which (older) results exist, without quoting them."""
    out = PeerRun(run_script(), 0.0)
    load(out)
    return out
