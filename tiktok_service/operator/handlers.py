"""kopf handlers: thin adapters from kopf's callbacks to `reconciler` (nothing is decided here).

Registered into a registry passed in (never kopf's global one), so nothing happens at
import time and two operators can run side by side in one process (tests, peering).

* `connector_pods` (index): every connector pod, reduced to a `PodObservation`, keyed by
  its owning Livestream; kopf fills it before any handler runs, so a restarted operator
  sees existing pods first and never creates a second one.
* `pod_changed` / `livestream_changed` (events): wake the Livestream's loop.
* `reconcile` (daemon): the per-Livestream loop; stopped by kopf on deletion and when
  this replica is paused by peering.
* `finalize` (on delete, with kopf's finalizer): remove the pod, close the row.
"""

from __future__ import annotations

from typing import Any

import kopf

from tiktok_service.operator import k8s, model, reconciler, store

_PODS_SELECTOR = {model.LABEL_NAME: model.CONNECTOR_APP}
_FINALIZE_RETRY_S = 5.0


def register(registry: kopf.OperatorRegistry, runtime: reconciler.Runtime, credentials: k8s.Credentials) -> None:
    livestreams = (model.GROUP, model.VERSION, model.PLURAL)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return credentials.connection_info()

    @kopf.index("pods", labels=_PODS_SELECTOR, id="connector_pods", registry=registry)
    async def connector_pods(body: kopf.Body, **_: Any) -> dict[reconciler.Key, model.PodObservation]:
        key = model.owner_key(body)
        return {key: model.observe_pod(body)} if key is not None else {}

    @kopf.on.event("pods", labels=_PODS_SELECTOR, id="pod_changed", registry=registry)
    async def pod_changed(body: kopf.Body, **_: Any) -> None:
        if (key := model.owner_key(body)) is not None:
            runtime.wake(key)

    @kopf.on.event(*livestreams, id="livestream_changed", registry=registry)
    async def livestream_changed(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
        runtime.spec_seen((namespace or "", name), int(body.get("metadata", {}).get("generation") or 0))

    @kopf.daemon(*livestreams, id="reconcile", cancellation_backoff=2.0, cancellation_timeout=5.0, registry=registry)
    async def reconcile(
        body: kopf.Body, namespace: str | None, name: str, stopped: kopf.DaemonStopped, **kwargs: Any
    ) -> None:
        pods: kopf.Index[reconciler.Key, model.PodObservation] = kwargs["connector_pods"]  # an index is a kwarg
        await reconciler.run(runtime, (namespace or "", name), body, pods, stopped)

    @kopf.on.delete(*livestreams, id="finalize", registry=registry)
    async def finalize(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
        try:
            await reconciler.finalize(runtime, (namespace or "", name), body)
        except (k8s.ApiError, store.StoreUnavailable) as exc:
            raise kopf.TemporaryError(f"cleanup failed: {exc}", delay=_FINALIZE_RETRY_S) from exc
