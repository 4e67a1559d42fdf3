"""The HTTP API: Livestreams per workspace, live events over SSE, stored events in pages.

Layers (each only imports those above it):

* `config`, `keys`, `resources`, `sse`, `schemas` -- settings and pure decisions (names,
  labels, views, SSE wire bytes, key format);
* `kube`, `repository`, `feeds` -- the only I/O: Kubernetes, PostgreSQL, Redis;
* `livestreams` -- the data layer routes call (workspace scoping lives here);
* `deps`, `routes`, `app`, `main` -- FastAPI wiring and the entry points.
"""
