"""Developer tooling for TikTok Service (`tiktok-service-dev`): not shipped with the product.

What a team deploys is `tiktok_service` (connector, persister, operator, API); this package
holds what only a developer's machine or the tests run:

* `controlplane`, `pki`, `ports`, `processes` -- a local Kubernetes control plane from the
  binaries `make controlplane` builds, and the process plumbing around it;
* `redis_server`, `postgres_server` -- throwaway Redis and PostgreSQL servers;
* `node_agent` -- a kubelet stand-in that runs pods bound to a local Node as processes;
* `simulator` -- a protocol-faithful TikTok LIVE server for tests, demos and consumers;
* `dev` -- `tiktok-service-dev dev`, the whole stack locally;
* `operator_harness`, `persister_harness`, `sample_events` -- harnesses for tests and benchmarks;
* `schemas` -- regenerates the event contract's files in a checkout.

It is installed editable from a checkout (`make venv`), so it may read the repository's
`deploy/`, `examples/` and `scripts/` files; the product package never imports it (an
import-linter contract checks that).
"""
