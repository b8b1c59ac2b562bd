"""raw → ready on a local Kafka cluster beside the single plaintext dev broker, in one run, paired.

`python -m benchmarks.bench_pipeline --brokers 3 --kafka-security sasl_ssl` comes here. Both run
the same load through the same worker processes (validator + batcher), alternating which goes
first in each pair so that both see the same machine; the cluster's workers connect as their own
principals (SASL_SSL, SCRAM, ACLs), its topics have 3 replicas and min.insync 2, so each write
is copied twice more and acknowledged only once two brokers have it. Reported: events/s per
variant, the per-pair ratio cluster / single, and CPU per event of the workers and of the brokers
(summed over the three JVMs, which share the machine's 2 cores with everything else).
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.bench_pipeline import RunResult, pipeline_run, start_broker
from benchmarks.report import write_section
from vaxflow.dev import kafka_broker, kafka_cluster
from vaxflow.dev.loadgen import generate
from workers.base.settings import Settings

SECTION = "## Cluster: raw → ready on three SASL_SSL brokers beside one plaintext broker"


def _cluster(home: Path, brokers: int, security: str) -> tuple[kafka_cluster.ClusterLayout, list[int]]:
    settings = Settings()
    base = kafka_broker.BrokerLayout(
        version=settings.kafka_version, cache_dir=settings.cache_dir, home=home, port=0, controller_port=0,
        heap="1g", jvm_options=kafka_broker.jvm_options(settings.kafka_jvm_options),
    )  # fmt: skip
    ports = [(39292 + 10 * i, 39293 + 10 * i, 39294 + 10 * i) for i in range(brokers)]
    layout = kafka_cluster.cluster_layout(base, home / "cluster", ports, secured=security == "sasl_ssl")
    return layout, kafka_cluster.start_cluster(layout)


def _cpu(results: list[RunResult], who: str) -> list[float]:
    return [sum(us for name, us in r.cpu_us.items() if (name == "broker") == (who == "broker")) for r in results]


def _fmt(values: list[float], digits: int = 0) -> str:
    return ", ".join(f"{v:,.{digits}f}" for v in values)


async def compare(events: int, runs: int, warmup_events: int, brokers: int, security: str) -> None:
    home = Path(tempfile.mkdtemp(prefix="vaxflow-bench-cluster-"))
    single, single_pid = start_broker(home, port=39092)
    cluster, cluster_pids = _cluster(home, brokers, security)
    try:
        await kafka_broker.wait_ready(single.bootstrap, pid=single_pid)
        await kafka_cluster.wait_cluster_ready(cluster, cluster_pids)
        base = Settings(kafka_bootstrap=single.bootstrap, window_seconds=2, grace_seconds=0, dev_home=home,
                        archive_dir=home / "archive")  # fmt: skip
        on_cluster = cluster.settings(base)

        async def grant(settings: Settings) -> int:
            return await kafka_cluster.grant_pipeline(cluster, settings)

        def as_principal(settings: Settings, name: str) -> dict[str, str]:
            env = {**os.environ, **settings.as_environment()}
            if cluster.secured:
                env.pop("VAXFLOW_KAFKA_SASL_PASSWORD", None)
                env |= cluster.environment(kafka_cluster.worker_user(name))
            return env

        async def run_single(n_events: int, seed: int) -> RunResult:
            load = generate(n_events, invalid_fraction=0.05, seed=seed)
            return await pipeline_run(base, load.payloads, load.keys, home, broker_pid=single_pid)

        async def run_cluster(n_events: int, seed: int) -> RunResult:
            load = generate(n_events, invalid_fraction=0.05, seed=seed)
            return await pipeline_run(on_cluster, load.payloads, load.keys, home, broker_pids=cluster_pids,
                                      prepare=grant, worker_env=as_principal)  # fmt: skip

        if warmup_events:
            await run_single(warmup_events, 12)
            await run_cluster(warmup_events, 12)
            print("warm-up runs (discarded) done")
        plain: list[RunResult] = []
        secured: list[RunResult] = []
        for run in range(runs):
            order = ("single", "cluster") if run % 2 == 0 else ("cluster", "single")
            for variant in order:
                result = await (run_single if variant == "single" else run_cluster)(events, 11)
                (plain if variant == "single" else secured).append(result)
                print(f"run {run + 1}: {variant} raw -> ready {result.rate:,.0f} events/s; CPU µs/event {result.cpu_us}")
    finally:
        kafka_cluster.stop_cluster(cluster)
        kafka_broker.stop_broker(single)
    ratios = [c.rate / s.rate for c, s in zip(secured, plain, strict=True)]
    label = f"{brokers} brokers, {security.upper()}, replication {min(3, brokers)}, min.insync {min(2, brokers)}"
    rows = [("one broker, PLAINTEXT, replication 1", plain), (label, secured)]
    table = "| | events/s (median) | runs | worker CPU µs/event (median) | broker CPU µs/event (median, summed) |\n"
    table += "|---|---:|---|---:|---:|\n"
    for name, results in rows:
        rates = [r.rate for r in results]
        table += (
            f"| {name} | {statistics.median(rates):,.0f} | {_fmt(rates)} | "
            f"{statistics.median(_cpu(results, 'workers')):.1f} ({_fmt(_cpu(results, 'workers'), 1)}) | "
            f"{statistics.median(_cpu(results, 'broker')):.1f} ({_fmt(_cpu(results, 'broker'), 1)}) |\n"
        )
    text = (
        f"{SECTION}\n\n`python -m benchmarks.bench_pipeline --brokers {brokers} --kafka-security {security} "
        f"--events {events} --runs {runs}` — {datetime.now(UTC):%Y-%m-%d}, {platform.python_implementation()} "
        f"{platform.python_version()}, 2 cores shared by every JVM and worker.\n"
        "The same load (8 seed types, many senders, 5% invalid) through the same validator and batcher processes, "
        "to the single plaintext dev broker and to a local cluster (each worker its own SCRAM principal with only its "
        "ACLs, TLS with hostname checks, every topic replicated and acknowledged by two brokers), in pairs whose "
        "order alternates; the time runs from starting the workers to their last commit, as in the section above. "
        f"One discarded warm-up run of {warmup_events:,} events on each first.\n\n"
        f"{table}\n"
        f"Per pair, cluster / single events/s: median {statistics.median(ratios):.2f} ({_fmt(ratios, 2)}).\n"
    )
    print(text)
    write_section(text)
