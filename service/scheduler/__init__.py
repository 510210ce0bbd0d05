"""The scheduler actor: owns the ready queue, the dependency graph and the resource ledger.

`core` is the pure decision logic (no I/O, no clock); `actor` is the thin loop around it that talks to
PostgreSQL, the API and the supervisor. `type_controls` (per-type pause and limits, consulted by the
core's dispatch) and `cron` (which schedule ticks fire) are pure too; `schedules` is the cron pass's
I/O side, run by the actor between turns.
"""
