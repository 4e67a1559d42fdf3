"""`make bench`: every benchmark, one line per figure, each a ratio against a baseline measured
in the same run on the same machine."""

from __future__ import annotations

import sys

from benchmarks import api_bench, connector_bench, operator_bench, persister_throughput


def main() -> int:
    print("# connector vs the bare TikTokLive client", flush=True)
    connector_bench.main()
    print("# persister vs raw asyncpg COPY", flush=True)
    persister_throughput.main()
    print("# operator: 1,000 Livestreams vs 1,000 pods created directly", flush=True)
    operator_bench.main()
    print("# API: 1,000 SSE subscribers vs a bare Redis XREAD reader", flush=True)
    api_bench.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
