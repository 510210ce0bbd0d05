"""The zygote (fork server): workers are its children, it dies with the supervisor and its workers die
with it, and a zygote that dies is replaced without losing or doubling an attempt."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable

import psutil

from tests.conftest import Service, wait_until

PROBE_MODULE = "tests.e2e.zygote_handlers"


def zygote_of(service: Service) -> psutil.Process | None:
    supervisor = psutil.Process(service.actor_pids()["supervisor"])
    for child in supervisor.children():
        with contextlib.suppress(psutil.Error):
            if " ".join(child.cmdline()).startswith("taskq: zygote"):
                return child
    return None


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_workers_are_children_of_the_zygote_and_inherit_nothing(service_factory: Callable[..., Service]) -> None:
    service = service_factory(TASKQ_HANDLERS=PROBE_MODULE).start()
    zygote = wait_until(lambda: zygote_of(service), what="the zygote")
    job = service.submit(type="zygote_probe")
    result = service.wait_status(job["job_id"], "succeeded")["result"]
    assert result["ppid"] == zygote.pid
    # stdin, stdout, stderr, its socket, its event loop's epoll and self-pipe (2), and the listing itself:
    # none of the zygote's nor any other worker's.
    assert result["fds"] <= 8, result
    spares = [p for p in zygote.children() if " ".join(p.cmdline()).strip() == "taskq: worker (spare)"]
    assert spares, "spares are forked ahead of need"


def test_a_running_worker_shows_its_job_in_ps(service: Service) -> None:
    job = service.submit(type="long_running", payload={"duration_seconds": 30})
    service.wait_status(job["job_id"], "running")
    pid = wait_until(lambda: service.job(job["job_id"])["attempts"][0]["worker_pid"], what="worker pid")
    title = wait_until(
        lambda: (
            " ".join(psutil.Process(pid).cmdline()).startswith("taskq: worker job") and psutil.Process(pid).cmdline()
        )
    )
    assert " ".join(title).strip() == f"taskq: worker {job['job_id']} attempt 1"
    zygote = zygote_of(service)
    assert zygote is not None
    assert psutil.Process(pid).ppid() == zygote.pid
    service.http.patch(f"/jobs/{job['job_id']}/cancel")
    assert service.wait_status(job["job_id"], "cancelled")["attempts"][0]["outcome"] == "cancelled"


def test_a_killed_zygote_is_replaced_and_its_running_attempt_is_retried_once(service: Service) -> None:
    job = service.submit(
        type="long_running", payload={"duration_seconds": 1.5}, retry_config={"initial_delay_seconds": 0}
    )
    service.wait_status(job["job_id"], "running")
    worker = wait_until(lambda: service.job(job["job_id"])["attempts"][0]["worker_pid"], what="worker pid")
    zygote = zygote_of(service)
    assert zygote is not None
    spares = [p.pid for p in zygote.children() if p.pid != worker]
    os.kill(zygote.pid, signal.SIGKILL)
    done = service.wait_status(job["job_id"], "succeeded", timeout=30)
    first, second = done["attempts"]
    assert (first["outcome"], second["outcome"]) == ("crashed", "succeeded")
    assert "SIGKILL" in first["error"]
    assert second["worker_pid"] != worker
    # Its workers went with it, the busy one before its attempt was reported (and so retried).
    for pid in [worker, *spares]:
        wait_until(lambda pid=pid: gone(pid), what=f"worker {pid} gone")
    replacement = wait_until(lambda: zygote_of(service), what="a new zygote")
    assert replacement.pid != zygote.pid
    assert psutil.Process(service.actor_pids()["supervisor"]).is_running()
    after = service.submit(type="quick_task", payload={"duration_seconds": 0})
    assert service.wait_status(after["job_id"], "succeeded")["attempt_count"] == 1
    assert "restarting" not in service.logs()  # the supervisor itself stayed up


def test_kill_9_of_the_supervisor_takes_the_zygote_and_its_workers_down(service: Service) -> None:
    job = service.submit(type="long_running", payload={"duration_seconds": 30}, retry_config={"max_attempts": 1})
    service.wait_status(job["job_id"], "running")
    worker = wait_until(lambda: service.job(job["job_id"])["attempts"][0]["worker_pid"], what="worker pid")
    zygote = zygote_of(service)
    assert zygote is not None
    tree = [zygote.pid, *[p.pid for p in zygote.children()]]
    assert worker in tree
    os.kill(service.actor_pids()["supervisor"], signal.SIGKILL)
    for pid in tree:
        wait_until(lambda pid=pid: gone(pid), what=f"process {pid} gone")
    assert service.wait_status(job["job_id"], "failed", timeout=30)["attempts"][0]["outcome"] == "crashed"


def test_without_spares_every_start_waits_for_a_fork_and_still_runs(service_factory: Callable[..., Service]) -> None:
    service = service_factory(TASKQ_SPARE_WORKERS="0").start()
    response = service.http.post(
        "/jobs/batch", json={"jobs": [{"type": "quick_task", "payload": {"duration_seconds": 0}}] * 20}
    )
    assert response.status_code == 201, response.text
    ids = [job["job_id"] for job in response.json()["jobs"]]
    pids = {service.wait_status(job_id, "succeeded")["result"]["worker_pid"] for job_id in ids}
    assert len(pids) == len(ids)
    zygote = zygote_of(service)
    assert zygote is not None
    wait_until(lambda: not zygote.children(), what="no idle worker kept")


def test_a_plain_def_handler_runs_once_and_its_return_is_the_result(service_factory: Callable[..., Service]) -> None:
    # Before, a `def` handler ran, then failed with a TypeError counted as transient: its side effects ran
    # once per attempt and the job ended `failed`.
    service = service_factory(TASKQ_HANDLERS=PROBE_MODULE).start()
    job = service.submit(type="plain_sum", payload={"numbers": [1, 2, 3]})
    done = service.wait_status(job["job_id"], "succeeded", "failed")
    assert done["status"] == "succeeded", done
    assert done["result"]["sum"] == 6
    assert [a["outcome"] for a in done["attempts"]] == ["succeeded"]
    lines = [line["message"] for line in service.http.get(f"/jobs/{job['job_id']}/logs").json()]
    assert "adding [1, 2, 3]" in lines


def test_a_timeout_kills_what_the_handler_started_too(service_factory: Callable[..., Service]) -> None:
    service = service_factory(TASKQ_HANDLERS=PROBE_MODULE, TASKQ_KILL_GRACE_SECONDS="0.5").start()
    job = service.submit(type="starts_a_child", timeout_seconds=1, retry_config={"max_attempts": 1})

    def child_pid() -> int | None:
        for line in service.http.get(f"/jobs/{job['job_id']}/logs").json():
            if line["event"] == "log" and line["message"].startswith("child "):
                return int(line["message"].split()[1])
        return None

    child = wait_until(child_pid, what="the handler's subprocess")
    assert not gone(child)
    done = service.wait_status(job["job_id"], "failed", timeout=30)
    assert [a["outcome"] for a in done["attempts"]] == ["timed_out"]
    wait_until(lambda: gone(child), timeout=10, what="the handler's subprocess to be killed with its worker")


def test_naming_handler_modules_replaces_the_demo_types(service_factory: Callable[..., Service]) -> None:
    """The demo types burn CPU, hold memory and flood output on request: a deployment that names its own
    modules does not expose them, unless it names them too."""
    own = service_factory(TASKQ_HANDLERS=PROBE_MODULE).start()
    refused = own.http.post("/jobs", json={"type": "quick_task"})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "type"
    assert "known types: plain_sum, starts_a_child, zygote_probe" in refused.json()["detail"]
    both = service_factory(TASKQ_HANDLERS=f"service.handlers.builtin,{PROBE_MODULE}").start()
    demo = both.submit(type="quick_task", payload={"duration_seconds": 0})
    mine = both.submit(type="plain_sum", payload={"numbers": [1, 2]})
    assert both.wait_status(demo["job_id"], "succeeded")["result"]["ok"] is True
    assert both.wait_status(mine["job_id"], "succeeded")["result"]["sum"] == 3
