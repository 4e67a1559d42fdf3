"""kopf handlers: thin adapters from kopf's callbacks to `reconciler` (nothing is decided here).

Registered into a registry passed in (never kopf's global one), so nothing happens at
import time and two operators can run side by side in one process (tests, peering).

* `connector_pods` (index): every connector pod, reduced to a `PodObservation`, keyed by
  its owning Livestream; kopf fills it before any handler runs, so a restarted operator
  sees existing pods first and never creates a second one.
* `pod_changed` / `livestream_changed` (events): wake the Livestream's loop; a Livestream
  being deleted is finalized (pod removed, row closed) before the event handler returns.
* `reconcile` (daemon): the per-Livestream loop; stopped by kopf when this replica is
  paused by peering or exits, and by itself when its Livestream is being deleted.
* `log_in` (activity): credentials for kopf's own requests, checked first (`login`).

No change-detecting handler (`on.create/update/delete`) on purpose: each would make kopf
write its last-handled state onto every Livestream (one more API write per object, and a
deep copy of every watched body per event). The daemon makes kopf put the finalizer on
each Livestream; kopf removes it only after the event's handlers have returned, so the
finalizer holds the Livestream until `finalize` has cleaned up, and a Livestream deleted
while no operator was running is finalized by the next one from its first event.
"""

from __future__ import annotations

from typing import Any

import kopf

from tiktok_service.operator import model, reconciler
from tiktok_service.operator.login import Login

_PODS_SELECTOR = {model.LABEL_NAME: model.CONNECTOR_APP}
#: 3-4 long watches + finalizer patches; our own calls have their own pool.
KOPF_CONNECTIONS = 64


def register(registry: kopf.OperatorRegistry, runtime: reconciler.Runtime, login: Login) -> None:
    livestreams = (model.GROUP, model.VERSION, model.PLURAL)

    @kopf.on.login(id="login", registry=registry)
    async def log_in(**_: Any) -> kopf.AiohttpSession | None:
        return await login()  # None (no credentials) only when refused while stopping: see `login`

    @kopf.index("pods", labels=_PODS_SELECTOR, id="connector_pods", registry=registry)
    async def connector_pods(body: kopf.Body, **_: Any) -> dict[reconciler.Key, model.PodObservation]:
        key = model.owner_key(body)
        return {key: model.observe_pod(body)} if key is not None else {}

    @kopf.on.event("pods", labels=_PODS_SELECTOR, id="pod_changed", registry=registry)
    async def pod_changed(body: kopf.Body, **_: Any) -> None:
        if (key := model.owner_key(body)) is not None:
            runtime.pod_changed(key)

    @kopf.on.event(*livestreams, id="livestream_changed", registry=registry)
    async def livestream_changed(type: str | None, body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
        key = (namespace or "", name)
        if type == "DELETED":
            runtime.livestream_gone(key)
        elif reconciler.deleting(body) and reconciler.held(body):
            await reconciler.finalize(runtime, key, body)  # the finalizer stays until this returns
        else:
            runtime.livestream_seen(key, body)

    @kopf.daemon(*livestreams, id="reconcile", cancellation_backoff=2.0, cancellation_timeout=5.0, registry=registry)
    async def reconcile(
        body: kopf.Body, namespace: str | None, name: str, stopped: kopf.DaemonStopped, **kwargs: Any
    ) -> None:
        pods: kopf.Index[reconciler.Key, model.PodObservation] = kwargs["connector_pods"]  # an index is a kwarg
        await reconciler.run(runtime, (namespace or "", name), body, pods, stopped)
