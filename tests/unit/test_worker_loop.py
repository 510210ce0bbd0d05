"""The event loop a worker adopts from the zygote: the object is shared (built once, before the fork),
its selector and self-pipe are the worker's own, so a wakeup never reaches a sibling."""

from __future__ import annotations

import asyncio
import os
import threading

from service.supervisor import worker


def _in_child(body: str) -> int:
    """Fork, run `body` (a name in CHILD_CHECKS) in the child, return its exit code."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = CHILD_CHECKS[body]()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _adopts_the_template_with_fresh_descriptors() -> int:
    template = worker._template_loop
    assert template is not None
    inherited = (template._selector, template._ssock.fileno(), template._csock.fileno())  # type: ignore[attr-defined]
    loop = worker._own_loop()
    fresh = (loop._selector, loop._ssock.fileno(), loop._csock.fileno())  # type: ignore[attr-defined]
    if loop is not template or fresh[0] is inherited[0]:
        return 2
    # A thread's result comes back through the self-pipe: it must wake this loop.
    result = loop.run_until_complete(asyncio.to_thread(threading.get_ident))
    return 0 if result != threading.get_ident() else 3


CHILD_CHECKS = {"adopt": _adopts_the_template_with_fresh_descriptors}


def test_a_forked_worker_adopts_the_zygote_loop_with_its_own_selector_and_self_pipe() -> None:
    worker.prepare()
    try:
        assert _in_child("adopt") == 0
        assert _in_child("adopt") == 0  # a sibling, forked from the same template, too
        template = worker._template_loop
        assert template is not None
        assert not template.is_closed()  # the zygote's own copy is untouched
    finally:
        if worker._template_loop is not None:
            worker._template_loop.close()
            worker._template_loop = None


def test_without_a_template_a_worker_builds_its_own_loop() -> None:
    assert worker._template_loop is None
    loop = worker._own_loop()
    try:
        assert loop.run_until_complete(asyncio.sleep(0, result=7)) == 7
    finally:
        loop.close()


def test_the_zygote_warm_up_runs_the_builtin_job_and_leaves_nothing_open() -> None:
    from service import handlers

    handlers.load()
    before = set(os.listdir("/proc/self/fd"))
    worker.warm_up(rounds=3)
    assert set(os.listdir("/proc/self/fd")) == before
