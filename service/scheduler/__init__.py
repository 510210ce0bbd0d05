"""The scheduler actor: owns the ready queue, the dependency graph and the resource ledger.

`core` is the pure decision logic (no I/O, no clock); `actor` is the thin loop around it that talks to
PostgreSQL, the API and the supervisor.
"""
