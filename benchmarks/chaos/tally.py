"""What a chaos scenario measured, and its line in the table: pure functions, no I/O.

The simulator knows every event id it sent; PostgreSQL (the `events` table) and the
livestream's own Redis stream say what the product made of them. An id is *stored once* with
exactly one row and at most one stream entry, *lost* with no row, *doubled* with more than one
row or more than one stream entry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Tally:
    scenario: str
    sent: int
    stored_once: int
    lost: int
    doubled: int
    recovery_s: float | None  # None: not everything sent before the fault ended was stored in time
    note: str = ""

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.doubled == 0


def tally(
    scenario: str,
    sent_ids: Iterable[str],
    rows: Mapping[str, int],
    stream_entries: Iterable[str],
    *,
    recovery_s: float | None,
    note: str = "",
) -> Tally:
    """`rows`: event id -> row count in `events`; `stream_entries`: the ids in the livestream stream."""
    expected = set(sent_ids)
    in_stream = Counter(stream_entries)
    doubled = {i for i in expected if rows.get(i, 0) > 1 or in_stream.get(i, 0) > 1}
    lost = {i for i in expected if rows.get(i, 0) == 0}
    once = {i for i in expected if rows.get(i, 0) == 1} - doubled
    return Tally(scenario, len(expected), len(once), len(lost), len(doubled), recovery_s, note)


HEADER = f"{'scenario':<20} {'sent':>7} {'stored once':>11} {'lost':>6} {'doubled':>7} {'recovery s':>10}  note"


def line(result: Tally) -> str:
    recovery = f"{result.recovery_s:10.1f}" if result.recovery_s is not None else f"{'-':>10}"
    return (
        f"{result.scenario:<20} {result.sent:>7} {result.stored_once:>11} {result.lost:>6} "
        f"{result.doubled:>7} {recovery}  {result.note}"
    )


def table(results: Iterable[Tally]) -> str:
    return "\n".join([HEADER, "-" * len(HEADER), *(line(result) for result in results)])


def markdown(results: Iterable[Tally]) -> str:
    """The table as the README shows it."""
    rows = [
        "| scenario | sent | stored once | lost | doubled | recovery s | note |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        recovery = f"{r.recovery_s:.1f}" if r.recovery_s is not None else "-"
        rows.append(f"| {r.scenario} | {r.sent} | {r.stored_once} | {r.lost} | {r.doubled} | {recovery} | {r.note} |")
    return "\n".join(rows)
