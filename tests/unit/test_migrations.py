"""How dbmate is called: the database URL, password included, never on a command line."""

from __future__ import annotations

from service.store.migrations import dbmate_command, dbmate_url


def test_dbmate_gets_the_url_from_its_environment_not_its_command_line() -> None:
    url = "postgresql://taskq:s3cret@db.example:5432/taskq"
    args, env = dbmate_command(url)
    assert not [arg for arg in args if "s3cret" in arg or "db.example" in arg]  # `ps` shows arguments to anyone
    assert env["DATABASE_URL"] == dbmate_url(url)
    assert "s3cret" in env["DATABASE_URL"]


def test_a_unix_socket_url_is_spelled_the_way_dbmate_reads_it() -> None:
    url = dbmate_url("postgresql://postgres@/taskq?host=/tmp/pg")
    assert url == "postgres://postgres@localhost/taskq?socket=%2Ftmp%2Fpg&sslmode=disable"
