"""The supervisor actor: runs each job attempt in its own worker process and reports how it ended."""
