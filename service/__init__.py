"""taskq: a durable, resource-aware task queue service.

The package is laid out by actor: `api` (HTTP front end), `scheduler` (priority, DAG and resource state),
`supervisor` (worker processes), `root` (the supervision tree), with `protocol` defining every message
between them and `store` holding every SQL statement.
"""
