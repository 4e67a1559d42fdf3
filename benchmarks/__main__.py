"""`make bench`: every benchmark, one line per figure, each a ratio against a baseline measured
in the same run on the same machine."""

from __future__ import annotations

import sys

from benchmarks import connector_bench, persister_throughput


def main() -> int:
    print("# connector vs the bare TikTokLive client", flush=True)
    connector_bench.main()
    print("# persister vs raw asyncpg COPY", flush=True)
    persister_throughput.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
