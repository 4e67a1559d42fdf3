"""The faults, one function each, and the table that names them (`FAULTS`, in run order).

Each `inject` returns when its fault is over: at once for an instant fault (a kill, a delete),
after the outage for one that lasts (PostgreSQL down, the persister stopped). The `time.sleep`
calls here are the faults' own durations, never waits for the product: those are conditions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from functools import partial
from typing import Any

import redis
from kubernetes import client

from benchmarks.chaos.scenario import Fault, Run
from tests.e2e_support import pid_of, wait_for
from tiktok_service.domain import naming
from tiktok_service.domain.events import EventType
from tiktok_service.domain.exit_codes import ExitCode

REDIS_DOWN_S = 3.0
OPERATOR_DOWN_S = 10.0
FAILOVER_TAIL_S = 0.5  # writes the old primary acknowledges after the replica was promoted


def _running_pod(run: Run, other_than: str | None = None) -> client.V1Pod:
    found = wait_for(
        partial(run.stack.cluster.running_pod, run.name, other_than=other_than),
        what=f"{run.name}: a running connector pod",
        timeout=120,
        explain=run.stack.cluster.explain(run.name),
    )
    assert found is not None
    return found


def connector_sigkill(run: Run) -> str:
    pod = _running_pod(run)
    os.kill(pid_of(pod), signal.SIGKILL)
    return "SIGKILL, no drain"


def pod_deletion(run: Run) -> str:
    pod = _running_pod(run)
    run.stack.cluster.delete_pod(pod)
    return "graceful delete (SIGTERM, drain)"


def _connector_env(run: Run, pod: client.V1Pod) -> dict[str, str]:
    """The pod's `CONNECTOR_*` environment as a second process for the same Livestream would get it."""
    env: dict[str, str] = {}
    assert pod.spec is not None
    for item in pod.spec.containers[0].env or []:
        if item.value is not None:
            env[item.name] = item.value
        elif item.value_from is not None and item.value_from.field_ref is not None:
            env[item.name] = str(uuid.uuid4())  # its own pod uid
        elif item.name == "CONNECTOR_REDIS_URL":  # from the namespace's Secret
            env[item.name] = run.stack.redis_url
    env["CONNECTOR_HTTP_PORT"] = "0"
    return env


def two_connectors(run: Run) -> str:
    """A second connector for the same Livestream (a replacement overlapping a partitioned pod)."""
    pod = _running_pod(run)
    env = {**os.environ, **_connector_env(run, pod)}
    log = run.stack.work_dir / f"{run.name}-second-connector.log"
    with log.open("wb") as out:
        second = subprocess.Popen(
            [sys.executable, "-m", "tiktok_service", "connector"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        # The second claims the Livestream (the pod exits 18); the operator's replacement claims it
        # back, and the second is refused in turn.
        wait_for(lambda: second.poll() is not None, what="the second connector to be fenced", timeout=120)
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
    code = second.returncode
    return f"second connector exited {code}" + (" (fenced)" if code == ExitCode.FENCED else "")


def _poison_entries(template: dict[str, Any], prefix: str) -> tuple[list[dict[str, str]], str]:
    """Five entries no connector writes (each must be dead-lettered) and one valid entry with a NUL
    in its text (stored, the NUL escaped). Returns them and the id of the valid one."""
    kind = EventType.COMMENT.value
    numeric_time = {**template, "id": f"{prefix}-time", "time": 1_700_000_000}  # the persister once crashed on it
    with_nul = {**template, "id": f"{prefix}-nul", "data": {**template["data"], "text": "a\x00b"}}
    entries = [
        {"type": kind, "id": f"{prefix}-json", "event": "not json"},
        {"type": kind, "id": f"{prefix}-time", "event": json.dumps(numeric_time)},
        {"type": kind, "id": f"{prefix}-noevent"},
        {"garbage": f"{prefix}-nofields"},
        {"type": kind, "id": f"{prefix}-binary", "event": "\x00\xff" * 10},
        {"type": kind, "id": f"{prefix}-nul", "event": json.dumps(with_nul)},
    ]
    return entries, f"{prefix}-nul"


def poison(run: Run) -> str:
    """Entries no connector would write, XADDed into a shared type stream: dead-lettered, never stored."""
    stream = naming.type_stream(EventType.COMMENT)
    prefix = f"chaos-poison-{uuid.uuid4().hex[:8]}"
    with redis.Redis.from_url(run.stack.redis_url) as writer:
        (_, fields), *_ = writer.xrevrange(stream, count=1)
        template = json.loads(fields[naming.FIELD_EVENT])
        entries, valid = _poison_entries(template, prefix)
        before = int(writer.xlen(naming.DEAD_LETTER_STREAM))
        for body in entries:
            writer.xadd(stream, dict(body))
        bad = len(entries) - 1
        wait_for(
            lambda: int(writer.xlen(naming.DEAD_LETTER_STREAM)) >= before + bad,
            what="the poison entries to be dead-lettered",
            timeout=60,
        )
        wait_for(
            lambda: run.stack.bg.run(_count_ids(run.stack.database_url, [valid])) == 1,
            what="the entry with a NUL to be stored",
            timeout=60,
        )
        dead = int(writer.xlen(naming.DEAD_LETTER_STREAM)) - before
    stored = run.stack.bg.run(_count_ids(run.stack.database_url, [str(e.get("id")) for e in entries]))
    return f"{dead}/{bad} poison entries dead-lettered, {stored - 1} stored; the NUL one stored"


async def _count_ids(database_url: str, ids: list[str]) -> int:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events WHERE event_id = ANY($1::text[])", ids))
    finally:
        await conn.close()


def operator_restart(run: Run) -> str:
    run.stack.operator.stop()
    time.sleep(OPERATOR_DOWN_S)
    run.stack.operator.start()
    return f"operator down {OPERATOR_DOWN_S:.0f} s"


def persister_lag(run: Run) -> str:
    """The persister stopped while the room sends `lag_events` as fast as it can (a rate-0 room)."""
    stack = run.stack
    stack.stop_persister()
    try:
        sent = stack.events_sent(run.username)
        lag = run.options.lag_events
        stack.bg.call(lambda: stack.simulator.room(run.username).resume(more=lag))
        wait_for(lambda: stack.events_sent(run.username) >= sent + lag, what="the lag events sent", timeout=600)
        with redis.Redis.from_url(stack.redis_url) as reader:
            wait_for(
                lambda: _published(reader, run.uid) >= sent + lag,
                what="the connector to publish the lag events",
                timeout=600,
            )
            longest = max(int(reader.xlen(name)) for name in naming.all_type_streams() if reader.exists(name))
    finally:
        stack.start_persister()
    return f"{lag} events behind (old MAXLEN floor 100); longest type stream {longest}"


def _published(reader: redis.Redis, uid: str) -> int:
    counts = reader.hgetall(naming.event_counts_key(uid))
    return sum(int(value) for value in counts.values())


def postgres_down(run: Run) -> str:
    down_s = run.options.postgres_down_s
    run.stack.postgres.stop()
    time.sleep(down_s)
    run.stack.postgres.start()
    return f"PostgreSQL down {down_s:.0f} s"


def redis_restart(run: Run) -> str:
    server = run.stack.redis_primary
    server.stop()
    time.sleep(REDIS_DOWN_S)
    server.start()
    return f"primary down {REDIS_DOWN_S:.0f} s (AOF kept)"


def redis_failover(run: Run) -> str:
    """Promote the replica while the old primary still acknowledges writes, then move clients over."""
    pair = run.stack.redis
    pair.wait_in_sync()
    pair.promote()
    time.sleep(FAILOVER_TAIL_S)
    with (
        redis.Redis(host="127.0.0.1", port=pair.primary.port) as old,
        redis.Redis(host="127.0.0.1", port=pair.replica.port) as new,
    ):
        key = naming.livestream_stream(run.uid)
        tail = int(old.xlen(key)) - int(new.xlen(key))
        pair.switch()
        old.replicaof("127.0.0.1", pair.replica.port)  # the old primary now follows the new one
    return f"replica promoted; {tail} acknowledged entries only the old primary had"


def node_loss(run: Run) -> str:
    """The node under the connector vanishes: its processes die with it and the cloud deletes the Node."""
    pod = _running_pod(run)
    assert pod.spec is not None and pod.spec.node_name is not None
    node: str = pod.spec.node_name
    os.kill(pid_of(pod), signal.SIGKILL)
    run.stack.stop_agent(node)
    client.CoreV1Api(run.stack.admin).delete_node(node)
    return f"node {node} lost"


def _replace_node(run: Run) -> None:
    from benchmarks.chaos.stack import NODE_NAMES

    for name in NODE_NAMES:
        if name not in run.stack.agents:
            run.stack.start_agent(name)


FAULTS: tuple[Fault, ...] = (
    Fault("connector-sigkill", connector_sigkill),
    Fault("pod-deletion", pod_deletion),
    Fault("two-connectors", two_connectors),
    Fault("poison", poison),
    Fault("operator-restart", operator_restart),
    Fault("persister-lag", persister_lag, rate=0.0),
    Fault("postgres-down", postgres_down),
    Fault("redis-restart", redis_restart),
    Fault("redis-failover", redis_failover),
    Fault("node-loss", node_loss, after=_replace_node),
)
BY_NAME = {fault.name: fault for fault in FAULTS}
