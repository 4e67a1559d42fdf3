"""`tiktok-service-dev dev` (`make dev`): the whole data plane on one machine, events shown live.

Starts Redis and PostgreSQL (local, temporary), the TikTok LIVE simulator with one room,
a persister and a connector as separate processes configured exactly as their pods would
be, then prints the livestream's events as they arrive. Ctrl-C stops everything in reverse
order and removes the temporary data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import asyncpg
import redis.asyncio as aioredis
from kubernetes.client import ApiClient
from kubernetes.config import new_client_from_config

from tiktok_service.access.database_logins import apply_database_logins
from tiktok_service.access.redis_users import apply_redis_users
from tiktok_service.database import livestreams_repository
from tiktok_service.database.livestreams_repository import LivestreamStatus
from tiktok_service.domain import access, naming
from tiktok_service.domain.access import Role
from tiktok_service.domain.events import Envelope, decode
from tiktok_service_dev import operator_harness, processes
from tiktok_service_dev.postgres_server import LocalPostgres
from tiktok_service_dev.redis_server import LocalRedis


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tiktok-service-dev dev", description=__doc__.splitlines()[0])
    parser.add_argument("--username", default="demo_streamer", help="simulated TikTok user")
    parser.add_argument("--rate", type=float, default=5.0, help="simulated events per second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quiet", action="store_true", help="do not print events, only a running count")
    parser.add_argument(
        "--data-plane-only",
        action="store_true",
        help="no Kubernetes: run one connector directly (no control plane binaries needed)",
    )
    parser.add_argument("--no-example", action="store_true", help="do not apply examples/livestream.yaml")
    return parser.parse_args(argv)


NAMESPACE = "tiktok-service"
#: Commands of `tiktok-service-dev`; every other command the stack runs is the product's.
DEV_COMMANDS = frozenset({"simulator", "node-agent"})


class Stack:
    """Owns every process of the local stack; `close()` stops them in reverse order."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.closers: list[Callable[[], None]] = []
        self.redis = LocalRedis()
        self.postgres = LocalPostgres()
        self.redis_as: dict[Role, str] = {}
        self.database_as: dict[Role, str] = {}

    def provision_access(self) -> None:
        """Each component's own Redis user and database login (with fresh random passwords),
        made by the same code as `tiktok-service access`; migrates the database on the way."""
        passwords = {role: secrets.token_urlsafe(16) for role in Role}
        asyncio.run(apply_redis_users(self.redis.url, passwords))
        asyncio.run(apply_database_logins(self.postgres.dsn, {r: passwords[r] for r in access.DATABASE_ROLES}))
        self.redis_as = {role: access.redis_role_url(self.redis.url, role, passwords[role]) for role in Role}
        self.database_as = {
            role: access.database_role_url(self.postgres.dsn, role, passwords[role]) for role in access.DATABASE_ROLES
        }

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start `tiktok-service <args>`, or `tiktok-service-dev <args>` for a developer command."""
        module = "tiktok_service_dev" if args[0] in DEV_COMMANDS else "tiktok_service"
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=open(self.log_path(name), "ab"),  # noqa: SIM115 - the child owns it
        )
        self.children.append((name, proc))
        return proc

    def log_path(self, name: str) -> str:
        return os.path.join(tempfile.gettempdir(), f"tiktok-dev-{name}.log")

    def close(self) -> None:
        for _, proc in reversed(self.children):
            processes.terminate(proc, timeout=25)
        for closer in reversed(self.closers):
            closer()
        self.redis.close()
        self.postgres.close()


def _describe(envelope: Envelope) -> str:
    user = f"@{envelope.user.unique_id}" if envelope.user else ""
    data = envelope.data
    kind = envelope.type.value.removeprefix("tiktok.")
    if kind == "comment":
        text = str(data.get("text", "")).replace("\n", " ")
        detail = f"{user}: {text}"
    elif kind == "gift":
        detail = (
            f"{user} sent {data.get('gift_name')} x{data.get('repeat_count')} ({data.get('total_diamonds')} diamonds)"
        )
    elif kind == "like":
        detail = f"{user} +{data.get('count')} likes (total {data.get('total')})"
    elif kind == "viewer":
        detail = f"{data.get('viewer_count')} watching"
    elif kind == "unknown":
        detail = f"method {data.get('method')}"
    elif kind in ("battle", "battle.armies"):
        sides = data.get("sides") or []
        detail = " vs ".join(f"{side.get('anchor_id')}: {side.get('score')}" for side in sides) or kind
    elif kind == "poll":
        detail = f"{data.get('poll_phase')} {data.get('title')!r}"
    elif kind == "subscription":
        detail = f"{user} subscribed"
    else:
        detail = user or str(data)
    return f"{kind:<10} {detail}"


async def show_events(redis_url: str, livestream_id: str | None, quiet: bool) -> None:
    """Print events as they arrive: one livestream's stream, or every per-type stream."""
    client = aioredis.from_url(redis_url)
    streams: dict[Any, Any]
    if livestream_id is not None:
        streams = {naming.livestream_stream(livestream_id): "0-0"}
    else:
        streams = dict.fromkeys(naming.all_type_streams(), "$")
    count = 0
    try:
        while True:
            reply = cast(
                list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
                await client.xread(dict(streams), block=1000, count=500),
            )
            for stream, entries in reply or []:
                for entry_id, fields in entries:
                    streams[stream.decode()] = entry_id
                    count += 1
                    if not quiet:
                        envelope = decode(fields[naming.FIELD_EVENT])
                        clock = time.strftime("%H:%M:%S", time.gmtime(envelope.time_ms / 1000))
                        print(f"{clock}  {envelope.livestream_id[:8]}  {_describe(envelope)}", flush=True)
            if quiet:
                print(f"\r{count} events", end="", flush=True)
    finally:
        await client.aclose()


@contextlib.contextmanager
def running_stack() -> Iterator[Stack]:
    stack = Stack()
    try:
        yield stack
    finally:
        print("\nstopping…", file=sys.stderr)
        stack.close()


async def register_livestream(dsn: str, livestream_id: str, username: str) -> None:
    """Without the operator (the single writer of livestream rows) the dev flow writes its own row."""
    conn = await asyncpg.connect(dsn)
    try:
        await livestreams_repository.upsert_livestream(
            conn, id=uuid.UUID(livestream_id), username=username, status=LivestreamStatus.CONNECTING, workspace_id="dev"
        )
    finally:
        await conn.close()


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    with running_stack() as stack:
        stack.redis.start()
        stack.postgres.start()
        sim_port = processes.free_port()
        sim_url = f"http://127.0.0.1:{sim_port}"
        stack.spawn(
            "simulator",
            [
                "simulator",
                "--port",
                str(sim_port),
                "--auto-create",
                "--mix-preset",
                "realistic",
                "--room",
                f"{args.username}:{args.seed}:{args.rate}",
            ],
            {},
        )
        processes.wait_for(lambda: processes.port_open(sim_port), timeout=20, what="the simulator")
        stack.provision_access()
        stack.spawn(
            "persister",
            ["persister"],
            {
                "PERSISTER_REDIS_URL": stack.redis_as[Role.PERSISTER],
                "PERSISTER_DATABASE_URL": stack.database_as[Role.PERSISTER],
                "PERSISTER_HTTP_PORT": "0",
            },
        )
        print(
            f"TikTok Service dev stack\n  redis       {stack.redis.url}\n  postgres    {stack.postgres.dsn}",
            file=sys.stderr,
        )
        print(f"  simulator   {sim_url}  (any username is a live room)", file=sys.stderr)
        if args.data_plane_only:
            livestream_id: str | None = str(uuid.uuid4())
            _run_one_connector(stack, args, livestream_id or "", sim_url)
        else:
            livestream_id = None
            _run_kubernetes(stack, args, sim_url)
        print(f"  logs        {stack.log_path('*')}\n  Ctrl-C to stop\n", file=sys.stderr)
        signal.signal(signal.SIGTERM, _raise_interrupt)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(show_events(stack.redis.url, livestream_id, args.quiet))
    return 0


def _run_one_connector(stack: Stack, args: argparse.Namespace, livestream_id: str, sim_url: str) -> None:
    asyncio.run(register_livestream(stack.postgres.dsn, livestream_id, args.username))
    stack.spawn(
        "connector",
        ["connector"],
        {
            "CONNECTOR_LIVESTREAM_ID": livestream_id,
            "CONNECTOR_USERNAME": args.username,
            "CONNECTOR_REDIS_URL": stack.redis_as[Role.CONNECTOR],
            "CONNECTOR_SIGN_API_URL": sim_url,
            "CONNECTOR_TIKTOK_APP_URL": sim_url,
            "CONNECTOR_TIKTOK_WEBCAST_URL": f"{sim_url}/webcast",
            "CONNECTOR_HTTP_PORT": "0",
            "CONNECTOR_WAIT_FOR_LIVE": "true",
            "CONNECTOR_LIVE_POLL_INTERVAL_S": "2",
        },
    )
    print(f"  livestream  {livestream_id} (@{args.username}, one connector, no Kubernetes)", file=sys.stderr)


def _run_kubernetes(stack: Stack, args: argparse.Namespace, sim_url: str) -> None:
    """Control plane + node agent + operator: Livestreams become connector pods run as local processes."""
    from tiktok_service_dev.controlplane import ControlPlane

    plane = ControlPlane(extra_users=["operator", "api"])
    stack.closers.append(plane.stop)
    plane.start()
    kubeconfig = str(plane.kubeconfig_path)
    with _api(kubeconfig) as api:
        operator_harness.install_crds(api)
        operator_harness.apply(api, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
        operator_harness.apply(api, [_connector_secret(stack.redis_as[Role.CONNECTOR])], namespace=NAMESPACE)
        operator_harness.grant_role(api, namespace=NAMESPACE, user="operator")
        operator_harness.create_peering(api, namespace=NAMESPACE, name="tiktok-operator")
        api_roles = [
            d for d in operator_harness.manifests(operator_harness.DEPLOY_DIR / "api-rbac.yaml") if d["kind"] == "Role"
        ]
        operator_harness.apply(api, api_roles, namespace=NAMESPACE)
        operator_harness.apply(api, [_binding("tiktok-api", "api")], namespace=NAMESPACE)
    stack.spawn("node-agent", ["node-agent", "--kubeconfig", kubeconfig, "--node-name", "dev-node"], {})
    stack.spawn(
        "operator",
        ["operator"],
        {
            "OPERATOR_KUBECONFIG": str(plane.kubeconfig_for("operator")),
            "OPERATOR_NAMESPACES": f'["{NAMESPACE}"]',
            "OPERATOR_PEERING_NAME": "tiktok-operator",
            "OPERATOR_REDIS_URL": stack.redis_as[Role.OPERATOR],
            "OPERATOR_DATABASE_URL": stack.database_as[Role.OPERATOR],
            "OPERATOR_SIGN_API_URL": sim_url,
            "OPERATOR_TIKTOK_APP_URL": sim_url,
            "OPERATOR_TIKTOK_WEBCAST_URL": f"{sim_url}/webcast",
            "OPERATOR_HTTP_PORT": "0",
            # Every pod of the local node shares this host: connectors must not all bind one port.
            "OPERATOR_CONNECTOR_HTTP_PORT": "0",
        },
    )
    api_port = processes.free_port()
    stack.spawn(
        "api",
        ["api"],
        {
            "API_PORT": str(api_port),
            "API_HOST": "127.0.0.1",
            "API_KUBECONFIG": str(plane.kubeconfig_for("api")),
            "API_NAMESPACE": NAMESPACE,
            "API_REDIS_URL": stack.redis_as[Role.API],
            "API_DATABASE_URL": stack.database_as[Role.API],
            "API_DOCS": "true",
        },
    )
    key = _create_api_key(stack.postgres.dsn)
    print(f"  kubernetes  {plane.server_url}\n  export KUBECONFIG={kubeconfig}", file=sys.stderr)
    print(f"  api         http://127.0.0.1:{api_port}/docs   key (workspace demo): {key}", file=sys.stderr)
    print(
        f"              curl -H 'Authorization: Bearer {key}' -d '{{\"username\": \"alice\"}}' "
        f"-H 'Content-Type: application/json' http://127.0.0.1:{api_port}/api/livestreams/connect",
        file=sys.stderr,
    )
    print(f"  kubectl     {_kubectl()} get livestreams -n {NAMESPACE}", file=sys.stderr)
    if not args.no_example:
        with _api(kubeconfig) as api:
            operator_harness.apply(api, operator_harness.manifests(operator_harness.EXAMPLES_DIR / "livestream.yaml"))
        print("  applied     examples/livestream.yaml (more: kubectl apply -f your-livestream.yaml)", file=sys.stderr)


def _api(kubeconfig: str) -> ApiClient:
    return cast(ApiClient, new_client_from_config(config_file=kubeconfig))  # type: ignore[no-untyped-call]


def _binding(role: str, user: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"{role}-{user}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }


def _create_api_key(dsn: str) -> str:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tiktok_service",
            "api-keys",
            "--database-url",
            dsn,
            "create",
            "--workspace",
            "demo",
            "--name",
            "dev",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("key: "))


def _kubectl() -> str:
    from tiktok_service_dev.controlplane import binaries_dir

    try:
        return str(binaries_dir() / "kubectl")
    except Exception:
        return "kubectl"


def _connector_secret(redis_url: str) -> dict[str, Any]:
    # The connector pods run on this machine (node agent), so they reach the local Redis directly.
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "tiktok-connector"},
        "type": "Opaque",
        "stringData": {"redis-url": redis_url},
    }


def _raise_interrupt(*_: Any) -> None:
    raise KeyboardInterrupt
