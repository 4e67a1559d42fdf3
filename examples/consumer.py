"""A stream consumer of TikTok Service events: a consumer group of your own, ack after work, resume.

Run it next to a deployment (only `redis` is needed, `pip install redis`):

    python examples/consumer.py --redis-url redis://localhost:6379/0 \\
        --group my-app --consumer worker-1 --types tiktok.comment,tiktok.gift

What it shows (the contract is `docs/asyncapi.yaml`):
- Each application reads the per-type streams with its own consumer group; the persister's
  group (`persister`) is never touched, so consumers and storage never steal each other's
  entries. A new group starts at the beginning of what the streams still hold (`--from-now`
  starts at new entries instead).
- An entry is acknowledged (XACK) only after it was handled. A consumer that crashes before
  that gets its entries again when it restarts under the same name: it first reads its own
  pending entries (id `0`), then new ones (`>`). Entries of a consumer that never comes back
  are taken over after `--claim-idle-ms` (XAUTOCLAIM).
- Delivery is therefore at least once: handling must be idempotent. Every event carries a
  stable `id` (TikTok's message id), here used to skip an event already handled.
- The persister trims a stream only below what every consumer group has acknowledged, so a
  group that falls behind keeps its entries (and shows up in the lag metrics); delete a group
  you no longer use (`XGROUP DESTROY`), or it holds the streams' retention back.

Each handled event is printed as one JSON line: `{"stream", "entry", "type", "id", "user"}`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import redis

BLOCK_MS = 1_000


class SeenIds:
    """The ids handled most recently: a bounded memory of what not to handle twice."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, event_id: str) -> bool:
        """Remember `event_id`; False when it was already there (a redelivery)."""
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True


def ensure_group(client: redis.Redis, streams: list[str], group: str, from_now: bool) -> None:
    for stream in streams:
        try:
            client.xgroup_create(stream, group, id="$" if from_now else "0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def entries(reply: Any) -> Iterator[tuple[str, str, dict[bytes, bytes]]]:
    """(stream, entry id, fields) of an XREADGROUP/XAUTOCLAIM reply."""
    for stream, found in reply or []:
        for entry_id, fields in found:
            if fields is not None:  # an entry trimmed while pending comes back as None
                yield stream.decode(), entry_id.decode(), fields


def handle(stream: str, entry_id: str, fields: dict[bytes, bytes]) -> dict[str, Any]:
    """Your work goes here. This one turns the event into one line of output."""
    event = json.loads(fields[b"event"])
    user = (event.get("data") or {}).get("user") or {}
    return {
        "stream": stream,
        "entry": entry_id,
        "type": event["type"],
        "id": event["id"],
        "user": user.get("unique_id"),
    }


def consume(args: argparse.Namespace) -> int:
    client = redis.Redis.from_url(args.redis_url)
    streams = [name.strip() for name in args.types.split(",") if name.strip()]
    ensure_group(client, streams, args.group, args.from_now)
    seen = SeenIds()
    handled = 0
    # First what this consumer read before and never acknowledged (a restart), then new entries.
    cursor = dict.fromkeys(streams, "0")
    while args.max_events is None or handled < args.max_events:
        for stream in streams:
            _, claimed, _ = client.xautoclaim(stream, args.group, args.consumer, args.claim_idle_ms, "0-0", count=100)
            if claimed:
                cursor[stream] = "0"  # now pending on us: read with the backlog below
        only_new = all(position == ">" for position in cursor.values())
        reply = client.xreadgroup(args.group, args.consumer, cursor, count=100, block=BLOCK_MS)
        batch = list(entries(reply))
        if not batch and only_new and args.until_idle:
            break
        for stream in streams:
            if cursor[stream] == "0" and not any(s == stream for s, _, _ in batch):
                cursor[stream] = ">"  # backlog done for this stream
        for stream, entry_id, fields in batch:
            if args.max_events is not None and handled >= args.max_events:
                break
            event_id = fields.get(b"id", b"").decode()
            if seen.add(event_id):
                print(json.dumps(handle(stream, entry_id, fields)), flush=True)
            client.xack(stream, args.group, entry_id)
            handled += 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--redis-url", default="redis://localhost:6379/0")
    parser.add_argument("--group", required=True, help="your application's consumer group")
    parser.add_argument("--consumer", required=True, help="this instance's stable name within the group")
    parser.add_argument("--types", default="tiktok.comment,tiktok.gift", help="comma-separated event types")
    parser.add_argument("--from-now", action="store_true", help="a new group starts at new entries")
    parser.add_argument("--claim-idle-ms", type=int, default=60_000, help="take over entries idle this long")
    parser.add_argument("--max-events", type=int, default=None, help="stop after this many entries")
    parser.add_argument("--until-idle", action="store_true", help="stop when nothing new arrives for a second")
    return consume(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
