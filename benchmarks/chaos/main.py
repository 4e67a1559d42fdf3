"""Run the chaos scenarios one after the other on one stack; one line each, then the table.

A scenario that cannot finish (the product never converged) prints its error and the run goes
on; the exit status is 1 if any scenario lost or doubled an event or did not finish.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from benchmarks.chaos.faults import BY_NAME, FAULTS
from benchmarks.chaos.scenario import Options, run_scenario
from benchmarks.chaos.stack import running_stack
from benchmarks.chaos.tally import HEADER, Tally, line, markdown, table


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(BY_NAME), help="run only this scenario (repeatable)")
    parser.add_argument("--quick", action="store_true", help="few events, short outages (a minute or two each)")
    parser.add_argument("--events", type=int, help="events per scenario (default 1500, quick 300)")
    parser.add_argument("--postgres-down-s", type=float, help="how long PostgreSQL is down (default 60, quick 10)")
    parser.add_argument(
        "--lag-events", type=int, help="events sent while the persister is stopped (default 20000, quick 2000)"
    )
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    return parser.parse_args(argv)


def options_from(args: argparse.Namespace) -> Options:
    quick = bool(args.quick)
    return Options(
        events=args.events or (300 if quick else 1500),
        postgres_down_s=args.postgres_down_s if args.postgres_down_s is not None else (10.0 if quick else 60.0),
        lag_events=args.lag_events or (2_000 if quick else 20_000),
        settle_s=10.0 if quick else 20.0,
    )


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    # The operator and the persister run in this process: their retry warnings during a fault are
    # expected; the table is the output (their logs are in the node agents' work dirs for connectors).
    logging.disable(logging.ERROR)
    options = options_from(args)
    faults = [fault for fault in FAULTS if not args.only or fault.name in args.only]
    results: list[Tally] = []
    failed: list[str] = []
    started = time.monotonic()
    print("starting the stack (control plane, two node agents, operator, persister, Redis pair, PostgreSQL)…")
    with running_stack() as stack:
        print(f"stack up in {time.monotonic() - started:.0f} s\n{HEADER}", flush=True)
        for fault in faults:
            try:
                result = run_scenario(stack, fault, options)
            except Exception as exc:  # one scenario that cannot finish must not hide the others
                failed.append(fault.name)
                print(f"{fault.name:<20} did not finish: {exc}", file=sys.stderr, flush=True)
                continue
            results.append(result)
            print(line(result), flush=True)
    print(f"\n{table(results)}")
    if args.markdown:
        print(f"\n{markdown(results)}")
    if failed:
        print(f"\nnot finished: {', '.join(failed)}")
    return 0 if not failed and all(result.clean for result in results) else 1
