"""The container deployment agrees with the service, checked from the files alone (no Docker needed):
docker-compose.yml, ops/Dockerfile, the Prometheus configuration and alert rules, and the Grafana
provisioning and dashboard. Every `taskq_*` metric they query must be one the catalogue in
service/telemetry.py produces, with labels and label values the service really sets."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from service.model import Outcome, Priority, Status
from service.settings import SETTINGS, load
from service.telemetry import CATALOGUE

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "ops" / "Dockerfile"
PROMETHEUS = ROOT / "ops" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "ops" / "prometheus" / "alerts.yml"
DATASOURCES = ROOT / "ops" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDER = ROOT / "ops" / "grafana" / "provisioning" / "dashboards" / "taskq.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "dashboards" / "taskq.json"

METRIC_NAME = re.compile(r"\btaskq_[a-z0-9_]+")
SELECTOR = re.compile(r"\b(taskq_[a-z0-9_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
KNOWN_VALUES: dict[str, set[str]] = {
    "outcome": {o.value for o in Outcome},
    "status": {s.value for s in Status},
    "priority": {p.value for p in Priority},
    "resource": {"cpu_units", "memory_mb"},
    "backfilled": {"true", "false"},
    "actor": {"api", "scheduler", "supervisor"},
}


# ------------------------------------------------------------------------------------------------ loading


def load_yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE)
    return data


def service(name: str) -> dict[str, Any]:
    services: dict[str, Any] = compose()["services"]
    assert name in services, f"docker-compose.yml has no {name!r} service"
    spec: dict[str, Any] = services[name]
    return spec


INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:?[?-])(?P<arg>[^}]*))?\}")
# What the operator's shell would hold when compose reads the file: a value for each required variable.
HOST_ENV = {
    "TASKQ_BOOTSTRAP_KEY": "compose-test-bootstrap-secret-0123456789abcdef",
    "TASKQ_CLUSTER_SECRET": "compose-test-cluster-secret-0123456789abcdef",
}


def interpolate(value: str) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?message}` against HOST_ENV."""

    def one(match: re.Match[str]) -> str:
        if match["name"] in HOST_ENV:
            return HOST_ENV[match["name"]]
        assert not (match["op"] or "").endswith("?"), f"{match['name']} is required but HOST_ENV lacks it"
        return match["arg"] if (match["op"] or "").endswith("-") else ""

    return INTERPOLATION.sub(one, value)


def environment(spec: dict[str, Any], *, raw: bool = False) -> dict[str, str]:
    """A service's environment, written either as a mapping or as a list of KEY=VALUE; interpolated as
    compose would, unless `raw`."""
    env = spec.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    values = {str(k): "" if v is None else str(v) for k, v in env.items()}
    return values if raw else {k: interpolate(v) for k, v in values.items()}


def published_ports(spec: dict[str, Any]) -> dict[int, int]:
    """container port -> host port, from the short ("8000:8000") or the long syntax."""
    ports: dict[int, int] = {}
    for entry in spec.get("ports", []):
        if isinstance(entry, dict):
            ports[int(entry["target"])] = int(entry.get("published", entry["target"]))
            continue
        parts = str(entry).split("/")[0].split(":")
        ports[int(parts[-1])] = int(parts[-2]) if len(parts) > 1 else int(parts[-1])
    return ports


def bind_mounts(spec: dict[str, Any]) -> dict[PurePosixPath, PurePosixPath]:
    """container path -> host path (relative to the project) for the service's bind mounts."""
    mounts = {}
    for entry in spec.get("volumes", []):
        if isinstance(entry, dict):
            source, target = entry.get("source", ""), entry["target"]
        else:
            source, target = str(entry).split(":")[:2]
        if source.startswith((".", "/")):
            mounts[PurePosixPath(target)] = PurePosixPath(source)
    return mounts


def host_path(spec: dict[str, Any], container_path: str) -> Path:
    """The project file a container path of `spec` maps to through its bind mounts."""
    path = PurePosixPath(container_path)
    for target, source in sorted(bind_mounts(spec).items(), key=lambda m: -len(m[0].parts)):
        if path == target or target in path.parents:
            return ROOT / source / path.relative_to(target)
    pytest.fail(f"{container_path} is not inside any bind mount of {spec.get('image')}")


def duration_seconds(text: str) -> float:
    """A compose duration such as "45s", "1m30s" or "1m"."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", text)
    assert parts, f"not a duration: {text!r}"
    assert "".join(n + u for n, u in parts) == text.strip(), f"not a duration: {text!r}"
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def dockerfile_instructions(build_args: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each instruction of ops/Dockerfile, continuation lines joined, with
    `${ARG}` references replaced as a build would: by `build_args`, else the ARG's default."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    instructions = [(text.split(None, 1)[0].upper(), text.split(None, 1)[1].strip()) for text in logical]
    values: dict[str, str] = {}
    substituted = []
    for name, args in instructions:
        args = re.sub(r"\$\{(\w+)\}", lambda m: values.get(m[1], ""), args)
        if name == "ARG":
            arg, _, default = args.partition("=")
            values[arg] = (build_args or {}).get(arg, default)
        substituted.append((name, args))
    return substituted


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def all_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for panel in panels:
        found.append(panel)
        found.extend(all_panels(panel.get("panels", [])))
    return found


def dashboard_expressions() -> list[str]:
    return [t["expr"] for p in all_panels(dashboard()["panels"]) for t in p.get("targets", []) if "expr" in t]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def alert_expressions() -> list[str]:
    return [str(rule["expr"]) for rule in alert_rules()]


def produced_series() -> dict[str, tuple[str, ...]]:
    """Every series name the catalogue produces -> the labels it carries."""
    names: dict[str, tuple[str, ...]] = {}
    for metric in CATALOGUE:
        if metric.kind == "histogram":
            names[metric.scraped + "_bucket"] = (*metric.attributes, "le")
            names[metric.scraped + "_sum"] = metric.attributes
            names[metric.scraped + "_count"] = metric.attributes
        else:
            names[metric.scraped] = metric.attributes
    return names


def datasource_uid() -> str:
    datasources = load_yaml(DATASOURCES)["datasources"]
    prometheus = [d for d in datasources if d["type"] == "prometheus"]
    assert len(prometheus) == 1, datasources
    uid: str = prometheus[0]["uid"]
    return uid


# ----------------------------------------------------------------------------------------------- compose


def test_compose_has_every_service_with_its_ports() -> None:
    services = compose()["services"]
    assert {"postgres", "migrate", "taskq", "prometheus", "grafana"} <= set(services)
    assert str(service("postgres")["image"]).split(":")[1].startswith("16")
    assert published_ports(service("taskq")) == {8000: 8000}
    assert published_ports(service("prometheus")) == {9090: 9090}
    assert published_ports(service("grafana")) == {3000: 3000}


def test_migrate_runs_dbmate_up_over_the_migrations() -> None:
    migrate = service("migrate")
    assert "dbmate" in migrate["image"]
    assert "up" in migrate["command"]
    migrations_dir = environment(migrate)["DBMATE_MIGRATIONS_DIR"]
    assert host_path(migrate, migrations_dir).resolve() == (ROOT / "db" / "migrations").resolve()
    url = urlsplit(environment(migrate)["DATABASE_URL"])
    assert url.hostname == "postgres"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    postgres_env = environment(service("postgres"))
    assert (url.username, url.password, url.path) == (
        postgres_env["POSTGRES_USER"],
        postgres_env["POSTGRES_PASSWORD"],
        "/" + postgres_env["POSTGRES_DB"],
    )


def test_every_taskq_variable_in_compose_is_a_real_setting_with_a_valid_value() -> None:
    known = {setting.env for setting in SETTINGS}
    used = {k: v for spec in compose()["services"].values() for k, v in environment(spec).items()}
    taskq_vars = {k: v for k, v in used.items() if k.startswith("TASKQ_")}
    assert taskq_vars, "the taskq service sets no TASKQ_* variable"
    assert set(taskq_vars) <= known, f"not settings: {sorted(set(taskq_vars) - known)}"
    load(environment(service("taskq")))  # raises SettingsError on a value the service would refuse


def test_taskq_service_runs_the_image_on_postgres_after_the_migrations() -> None:
    taskq = service("taskq")
    assert (ROOT / taskq["build"]["context"] / taskq["build"]["dockerfile"]).resolve() == DOCKERFILE.resolve()
    assert taskq["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    settings = load(environment(taskq))
    assert settings.database_url is not None, "compose must use its postgres, not an embedded one"
    url = urlsplit(settings.database_url)
    migrate_url = urlsplit(environment(service("migrate"))["DATABASE_URL"])
    assert (url.hostname, url.port or 5432, url.path) == (migrate_url.hostname, migrate_url.port, migrate_url.path)
    assert settings.host == "0.0.0.0", "other containers (Prometheus) must reach the API"


def test_the_bootstrap_key_comes_from_the_operators_environment_and_is_required() -> None:
    """Bound to 0.0.0.0, the service refuses to start without a key; compose must not start it without
    one either, and must not carry a secret in the repository."""
    raw = environment(service("taskq"), raw=True)["TASKQ_BOOTSTRAP_KEY"]
    match = INTERPOLATION.fullmatch(raw)
    assert match is not None, f"TASKQ_BOOTSTRAP_KEY must be ${{TASKQ_BOOTSTRAP_KEY:?...}}, not a value: {raw!r}"
    assert (match["name"], match["op"]) == ("TASKQ_BOOTSTRAP_KEY", ":?")
    settings = load(environment(service("taskq")))
    assert settings.auth != "off"
    assert settings.bootstrap_key is not None


def test_taskq_port_agrees_with_published_port_healthcheck_and_scrape_target() -> None:
    taskq = service("taskq")
    port = load(environment(taskq)).port
    assert port in published_ports(taskq)
    check = " ".join(taskq["healthcheck"]["test"])
    urls = re.findall(r"https?://[^'\" ]+", check)
    assert [urlsplit(u).path for u in urls] == ["/health/ready"], check
    assert urlsplit(urls[0]).port == port
    targets = [
        t for job in load_yaml(PROMETHEUS)["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    ]
    assert f"taskq:{port}" in targets


def test_stop_grace_period_outlasts_the_drain_and_the_kill_grace() -> None:
    taskq = service("taskq")
    settings = load(environment(taskq))
    period = duration_seconds(str(taskq["stop_grace_period"]))
    assert period > settings.shutdown_grace_seconds + settings.kill_grace_seconds, (
        f"stop_grace_period {period}s leaves no room for a drain of {settings.shutdown_grace_seconds}s "
        f"plus {settings.kill_grace_seconds}s of kill grace before Docker's SIGKILL"
    )


def test_the_cluster_profile_is_three_nodes_of_one_cluster_on_the_compose_postgres() -> None:
    nodes = {name: service(name) for name in ("taskq-a", "taskq-b", "taskq-c")}
    settings = {name: load(environment(spec)) for name, spec in nodes.items()}
    single = load(environment(service("taskq")))
    assert all(spec.get("profiles") == ["cluster"] for spec in nodes.values())
    assert "profiles" not in service("taskq"), "the single node is the default"
    assert {s.node for s in settings.values()} == {"a", "b", "c"}
    assert {s.database_url for s in settings.values()} == {single.database_url}
    secrets = {s.cluster_secret.value for s in settings.values() if s.cluster_secret is not None}
    assert len(secrets) == 1, "one cluster: the same secret on every node"
    for name, spec in nodes.items():
        raw = environment(spec, raw=True)["TASKQ_CLUSTER_SECRET"]
        match = INTERPOLATION.fullmatch(raw)
        assert match is not None, "the secret comes from the operator's environment"
        assert (match["name"], match["op"]) == ("TASKQ_CLUSTER_SECRET", ":?")
        assert settings[name].advertise_host == name, "other nodes reach it by its compose service name"
        assert settings[name].cluster_port != 0, "a fixed port, published in the lease"
        assert spec["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        period = duration_seconds(str(spec["stop_grace_period"]))
        assert period > settings[name].shutdown_grace_seconds + settings[name].kill_grace_seconds
    host_ports = [published_ports(spec)[settings[name].port] for name, spec in nodes.items()]
    assert sorted(host_ports) == [8001, 8002, 8003]


def test_prometheus_and_grafana_mount_their_configuration() -> None:
    prometheus = service("prometheus")
    flags = dict(arg.split("=", 1) for arg in prometheus["command"] if arg.startswith("--") and "=" in arg)
    assert host_path(prometheus, flags["--config.file"]).resolve() == PROMETHEUS.resolve()

    grafana = service("grafana")
    assert host_path(grafana, "/etc/grafana/provisioning/datasources/prometheus.yml").resolve() == DATASOURCES.resolve()
    provider_path = load_yaml(DASHBOARD_PROVIDER)["providers"][0]["options"]["path"]
    assert host_path(grafana, f"{provider_path}/taskq.json").resolve() == DASHBOARD.resolve()
    home = environment(grafana).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert host_path(grafana, home).resolve() == DASHBOARD.resolve()


# ---------------------------------------------------------------------------------------------- Dockerfile


def test_dockerfile_entrypoint_is_exec_form_taskq_serve() -> None:
    instructions = dockerfile_instructions()
    entrypoints = [args for name, args in instructions if name == "ENTRYPOINT"]
    assert len(entrypoints) == 1, entrypoints
    argv = json.loads(entrypoints[0])  # exec form is a JSON array: no shell between Docker and the service
    assert argv == ["taskq", "serve"], argv
    assert not [args for name, args in instructions if name == "CMD"], "a CMD would add arguments to `taskq serve`"
    assert [args for name, args in instructions if name == "STOPSIGNAL"] in ([], ["SIGTERM"])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["taskq"] == "service.cli:main"


def test_dockerfile_settings_and_build_context() -> None:
    instructions = dockerfile_instructions()
    env: dict[str, str] = {}
    for name, args in instructions:
        if name == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(args))
    known = {setting.env for setting in SETTINGS} | {"TASKQ_MIGRATIONS_DIR"}  # read by service/store/migrations
    assert {k for k in env if k.startswith("TASKQ_")} <= known
    load({k: v for k, v in env.items() if k != "TASKQ_MIGRATIONS_DIR"})
    assert str(load(env).port) in [args.split("/")[0] for name, args in instructions if name == "EXPOSE"]
    ignore = DOCKERFILE.with_name("Dockerfile.dockerignore")
    if ignore.exists():  # everything the image copies must survive the ignore file
        kept = {line[1:].strip().rstrip("/") for line in ignore.read_text().splitlines() if line.startswith("!")}
        for name, args in instructions:
            if name == "COPY":
                for source in shlex.split(args)[:-1]:
                    path = source.rstrip("/")
                    assert (ROOT / path).exists(), f"{source} is not in the repository"
                    assert any(path == k or path.startswith(f"{k}/") for k in kept), f"{source} is excluded"


def test_dockerfile_ships_the_handler_code_named_by_its_build_arguments() -> None:
    args = {"APP_DIR": "ops/example_app", "TASKQ_HANDLERS": "myapp.jobs"}
    instructions = dockerfile_instructions(args)
    env: dict[str, str] = {}
    for name, value in instructions:
        if name == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(value))
    assert env["TASKQ_HANDLERS"] == "myapp.jobs"
    assert load(env).handlers == ("myapp.jobs",)
    copies = {shlex.split(value)[0]: shlex.split(value)[-1] for name, value in instructions if name == "COPY"}
    assert copies["ops/example_app"] in env["PYTHONPATH"].split(":")
    assert (ROOT / "ops/example_app/requirements.txt").is_file()
    # Without the argument the image runs the built-in types (an empty TASKQ_HANDLERS is the default).
    default_env = dict(
        item.split("=", 1) for name, value in dockerfile_instructions() if name == "ENV" for item in shlex.split(value)
    )
    assert load({"TASKQ_HANDLERS": default_env["TASKQ_HANDLERS"]}).handlers == ()
    # The example app loads the way the image loads it: only its own modules on the path, its declared
    # defaults accepted by the service.
    probe = (
        "from service import handlers; from service.api.job_types import declared_defaults_problem; "
        "handlers.load(['myapp.jobs']); print(sorted(handlers.known_types()), declared_defaults_problem())"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'ops/example_app'}{os.pathsep}{ROOT}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "['export_rows', 'welcome_email'] None", done.stderr


# ---------------------------------------------------------------------------------------------- Prometheus


def test_prometheus_scrapes_the_metrics_endpoint_and_loads_the_alert_rules() -> None:
    config = load_yaml(PROMETHEUS)
    rule_files = [PROMETHEUS.parent / name for name in config["rule_files"]]  # relative to the config file
    assert ALERTS in rule_files
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == "taskq"]
    assert len(jobs) == 1
    assert jobs[0].get("metrics_path", "/metrics") == "/metrics"
    assert jobs[0].get("scheme", "http") == "http"


def test_alert_rules_are_complete_and_cover_the_failure_modes() -> None:
    rules = alert_rules()
    for rule in rules:
        assert {"alert", "expr", "labels", "annotations"} <= set(rule), rule
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), names
    exprs = " ".join(alert_expressions())
    assert "taskq_dlq_size" in exprs
    assert re.search(r"histogram_quantile\(0\.95,.*taskq_wait_time_seconds_bucket", exprs, re.S)
    assert re.search(r'taskq_jobs_finished_total\{outcome=~"[^"]*crashed[^"]*"', exprs)
    assert "memory_exceeded" in exprs
    assert "taskq_actor_restarts" in exprs
    assert re.search(r'\bup\{job="taskq"\}\s*==\s*0', exprs)


# ------------------------------------------------------------------------------------------------- Grafana


def test_grafana_datasource_points_at_the_compose_prometheus() -> None:
    datasource = next(d for d in load_yaml(DATASOURCES)["datasources"] if d["type"] == "prometheus")
    assert datasource["url"] == "http://prometheus:9090"
    assert 9090 in published_ports(service("prometheus"))


def test_dashboard_is_a_grafana_dashboard_on_the_provisioned_datasource() -> None:
    board = dashboard()
    assert board["title"]
    assert board["uid"]
    assert 36 <= board["schemaVersion"] <= 41
    panels = all_panels(board["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    uid = datasource_uid()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, panel["title"]
            assert target["expr"].strip(), panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_dashboard_has_the_panels_the_issue_asks_for() -> None:
    exprs = dashboard_expressions()

    def has(pattern: str) -> bool:
        return any(re.search(pattern, e) for e in exprs)

    assert has(r"sum by \(outcome\) \(rate\(taskq_jobs_finished_total\[")
    assert has(r"rate\(taskq_jobs_submitted_total\[")
    assert has(r'sum by \(priority\) \(taskq_queue_depth\{status="pending"\}\)')
    for q in ("0.5", "0.95", "0.99"):
        assert has(rf"histogram_quantile\({q}, sum by \(le, priority\) \(rate\(taskq_wait_time_seconds_bucket\[")
        assert has(rf"histogram_quantile\({q}, .*taskq_run_time_seconds_bucket")
    for metric in ("taskq_resources_in_use", "taskq_capacity", "taskq_utilization", "taskq_job_retries_total"):
        assert has(rf"\b{metric}\b"), metric
    assert has(r'taskq_jobs_finished_total\{outcome!="succeeded"\}')
    assert has(r"\btaskq_dlq_size\b")
    assert has(r'taskq_jobs_started_total\{backfilled="true"\}')
    assert has(r"\btaskq_oldest_waiting_age_seconds\b")
    assert has(r"taskq_scheduler_turn_duration_seconds_bucket")
    assert has(r"rate\(taskq_http_requests_total\[")
    assert has(r"taskq_http_request_duration_seconds_bucket")
    assert has(r"\btaskq_actor_restarts\b")


# ------------------------------------------------------------------------------------------ metric names


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_metric_queried_is_produced_by_the_catalogue(source: str) -> None:
    exprs = dashboard_expressions() if source == "dashboard" else alert_expressions()
    produced = produced_series()
    referenced = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    assert referenced
    assert referenced <= set(produced), f"not in service/telemetry.py: {sorted(referenced - set(produced))}"


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_label_matchers_use_labels_and_values_the_service_sets(source: str) -> None:
    exprs = dashboard_expressions() if source == "dashboard" else alert_expressions()
    produced = produced_series()
    for expr in exprs:
        for name, matchers in SELECTOR.findall(expr):
            for label, op, value in MATCHER.findall(matchers):
                assert label in produced.get(name, ()), f"{name} has no label {label!r}: {expr}"
                if label in KNOWN_VALUES and op in ("=", "!="):
                    assert value in KNOWN_VALUES[label], f"{label}={value!r} never occurs: {expr}"
                elif label in KNOWN_VALUES:
                    assert set(value.split("|")) <= KNOWN_VALUES[label], f"{label}=~{value!r}: {expr}"
