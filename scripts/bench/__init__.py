"""`make bench`: measures taskq on this machine and writes `evaluation_results.md` (`python -m scripts.bench`).

Modules, in the order a run uses them:

- `core_bench`: the pure scheduler core (no I/O) holding 10^3 .. 10^6 waiting jobs;
- `database`, `service_proc`: a PostgreSQL (embedded unless TASKQ_DATABASE_URL is set) and the real service,
  started and stopped by pid;
- `latency`: submit → start on an idle node and the stages of one job, from PostgreSQL's µs timestamps;
- `http_load`, `submit_rates`: the durable submit path with cheap load generators (wrk, raw sockets);
- `perf_test`: the specification's 1000-job performance test, CPU, memory, query latency;
- `scenarios`: the specification's five scenarios and the bonus (job lists from `tests/scenarios.py`);
- `drain`: 10k-job end-to-end drains on a large node, fresh process or reused worker;
- `cluster`: a plain node, one clustered node and three on one database (spread, drain rate, the leader's
  CPU), and the leader's failover by SIGKILL; alone as `python -m scripts.bench.cluster`;
- `peers`: the peer queues, measured in the same sitting by the shared harness (`--peers`);
- `targets`, `render` (and `render_*`): the issue's targets and the report.
"""
