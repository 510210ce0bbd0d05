"""The database gateway: every SQL statement lives in `queries.sql`, run through `gateway`."""
