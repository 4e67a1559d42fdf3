"""The API's data layer for livestreams: routes call this, never Kubernetes or SQL directly.

Every method takes the caller's workspace and treats a Livestream of another workspace
exactly like one that does not exist (None), so a route can only answer 404 and never
confirms that someone else's livestream exists.

Finding a Livestream by id (its uid): the uid -> name mapping never changes during a
resource's life, so it is cached (bounded). On a miss the livestreams row (the operator
mirrors every Livestream there, with its workspace and username) gives the name, since
names are derived from (workspace, username); a Livestream so new that the operator has
not written its row yet is found by the name the API noted in Redis when it created it
(shared by every replica). Either way it costs one GET by name on the Kubernetes API, and
an unknown id costs none: no lookup ever lists the cluster.

Connecting counts the workspace's active Livestreams first (one label-selected list, only
on connect): beyond `max_livestreams` the connect is refused (403 `livestream_quota`).
Connects of one workspace hold a lock in Redis from the count to the create, so two
concurrent connects, on one replica or on two, never both take the last place.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Final

import aiohttp
import asyncpg
import orjson
import redis.asyncio as aioredis
from fastapi import status
from redis.exceptions import LockError

from tiktok_service.api import errors, feeds, kube, quotas, repository, resources, schemas
from tiktok_service.database import events_repository, events_table
from tiktok_service.domain.livestream import DesiredState, Phase

log = logging.getLogger(__name__)

_NAME_CACHE_SIZE: Final = 10_000
#: How long the name of a Livestream the API created stays in Redis: the operator writes its
#: row within seconds, after which the row gives the name.
_NAME_INDEX_TTL_S: Final = 7 * 24 * 3600
#: A connect's lock: longer than its few Kubernetes calls take, short enough to outlive a crash briefly.
_CONNECT_LOCK_S: Final = 60.0
_CONNECT_WAIT_S: Final = 10.0
_END_REASONS: Final = {
    Phase.STOPPED: feeds.STOPPED,
    Phase.ENDED: feeds.ENDED,
    Phase.FAILED: feeds.FAILED,
}


class WrongWorkspace(Exception):
    """The request names a workspace other than the API key's."""


class Invalid(Exception):
    """Kubernetes refused the resource; a client error (our words: the API server's are logged)."""


class LivestreamService:
    def __init__(
        self, kube_api: kube.LivestreamsApi, pool: asyncpg.Pool, redis: aioredis.Redis, *, max_livestreams: int
    ) -> None:
        self._kube = kube_api
        self._pool = pool
        self._redis = redis
        self._max_livestreams = max_livestreams
        self._names: OrderedDict[str, str] = OrderedDict()

    # -- lookups -----------------------------------------------------------------------------

    def _remember(self, livestream: dict[str, Any]) -> None:
        self._names[resources.uid(livestream)] = resources.name(livestream)
        self._names.move_to_end(resources.uid(livestream))
        while len(self._names) > _NAME_CACHE_SIZE:
            self._names.popitem(last=False)

    async def _get_if(self, name: str, livestream_id: str) -> dict[str, Any] | None:
        found = await self._kube.get(name)
        if found is None or resources.uid(found) != livestream_id:
            self._names.pop(livestream_id, None)
            return None
        self._remember(found)
        return found

    async def find(self, workspace_id: str, livestream_id: uuid.UUID) -> dict[str, Any] | None:
        """The Livestream `livestream_id` of `workspace_id`, or None (also when it is another workspace's)."""
        key = str(livestream_id)
        found: dict[str, Any] | None = None
        if (name := self._names.get(key)) is not None:
            found = await self._get_if(name, key)
        else:
            async with self._pool.acquire() as conn:
                row = await repository.livestream_row(conn, livestream_id, workspace_id)
            if row is not None:
                found = await self._get_if(resources.livestream_name(workspace_id, row.username), key)
            elif (noted := await self._redis.get(quotas.livestream_name_key(key))) is not None:
                found = await self._get_if(noted if isinstance(noted, str) else noted.decode(), key)
        return found if found is not None and resources.in_workspace(found, workspace_id) else None

    async def _row(self, workspace_id: str, livestream_id: str) -> Any:
        async with self._pool.acquire() as conn:
            return await repository.livestream_row(conn, uuid.UUID(livestream_id), workspace_id)

    async def _detail(self, workspace_id: str, livestream: dict[str, Any]) -> dict[str, Any]:
        row = await self._row(workspace_id, resources.uid(livestream))
        return resources.view(livestream, row, detail=True)

    # -- commands ----------------------------------------------------------------------------

    async def connect(self, workspace_id: str, request: schemas.LivestreamCreate) -> schemas.LivestreamConnected:
        """Create the Livestream, or return the workspace's existing one for that user.

        An existing one is set Running again, and the options the request carries (connection
        options, `wait_for_live`, `event_types`) replace its own: a connect states how the
        connector should run, and answering 200 while running with other options would mislead
        the client. Options the request leaves out stay; Kubernetes refusing the new ones is a
        422 like on create.
        """
        if request.workspace_id is not None and request.workspace_id != workspace_id:
            raise WrongWorkspace(f"this API key belongs to workspace {workspace_id!r}")
        for secret in request.secrets():
            if (refusal := resources.secret_refusal(workspace_id, secret)) is not None:
                raise WrongWorkspace(refusal)
        body = resources.desired_livestream(
            namespace=self._kube.namespace,
            workspace_id=workspace_id,
            username=request.username,
            wait_for_live=request.wait_for_live,
            event_types=[t.value for t in request.event_types or []],
            connection=request.connection_spec(),
        )
        name = body["metadata"]["name"]
        lock = self._redis.lock(
            quotas.connect_lock_key(workspace_id),
            timeout=_CONNECT_LOCK_S,
            blocking_timeout=_CONNECT_WAIT_S,
            thread_local=False,
            raise_on_release_error=False,  # held past its timeout: the connect is done either way
        )
        if not await lock.acquire():  # False once `blocking_timeout` has passed
            raise errors.Refusal(
                status.HTTP_409_CONFLICT,
                errors.CONFLICT,
                "other connects of this workspace are still running; retry",
                retry_after_s=1,
            )
        try:
            refusal = quotas.livestream_quota_refusal(
                await self._kube.list(resources.workspace_selector(workspace_id)), name, self._max_livestreams
            )
            if refusal is not None:
                raise errors.Refusal(status.HTTP_403_FORBIDDEN, errors.LIVESTREAM_QUOTA, refusal)
            return await self._connect(workspace_id, request, body)
        finally:
            # Redis is gone, or the lock outlived its timeout: either way it is no longer held.
            with contextlib.suppress(LockError, *errors.UNAVAILABLE_ERRORS):
                await lock.release()

    async def _connect(
        self, workspace_id: str, request: schemas.LivestreamCreate, body: dict[str, Any]
    ) -> schemas.LivestreamConnected:
        name = body["metadata"]["name"]
        created = resumed = False
        livestream: dict[str, Any] | None = None
        for _ in range(3):  # create, or take the existing one; again if it vanished in between
            try:
                livestream = await self._kube.create(body)
                created = True
                break
            except kube.ApiError as exc:
                if exc.status == 422:
                    raise _invalid(exc) from exc
                if exc.status != 409:
                    raise
            livestream = await self._kube.get(name)
            if livestream is not None:
                break
        if livestream is None:
            raise kube.ApiError(409, "Conflict", f"livestream {name} is being replaced; try again")
        if not resources.in_workspace(livestream, workspace_id):
            raise kube.ApiError(409, "Conflict", f"livestream {name} is not managed by this API")
        reconfigured = False
        if not created:
            carried = [key for key, field in resources.RECONNECT_OPTIONS.items() if field in request.model_fields_set]
            spec_patch = resources.reconnect_patch(livestream.get("spec") or {}, body["spec"], carried)
            if spec_patch is not None:
                try:
                    patched = await self._kube.patch_spec(name, resources.uid(livestream), spec_patch)
                except kube.ApiError as exc:
                    if exc.status == 422:
                        raise _invalid(exc) from exc
                    raise
                if patched is None:
                    raise kube.ApiError(409, "Conflict", f"livestream {name} is being replaced; try again")
                livestream = patched
                resumed, reconfigured = "state" in spec_patch, bool(spec_patch.keys() - {"state"})
        self._remember(livestream)
        if created:  # found by id on every replica before the operator has written its row
            await self._note_name(resources.uid(livestream), name)
        fields = await self._detail(workspace_id, livestream)
        return schemas.LivestreamConnected(**fields, created=created, resumed=resumed, reconfigured=reconfigured)

    async def _note_name(self, livestream_id: str, name: str) -> None:
        try:
            await self._redis.set(quotas.livestream_name_key(livestream_id), name, ex=_NAME_INDEX_TTL_S)
        except errors.UNAVAILABLE_ERRORS as exc:  # the operator's row will name it; until then other replicas 404
            log.warning("could not note a new livestream's name", extra={"error": repr(exc)})

    async def disconnect(self, workspace_id: str, livestream_id: uuid.UUID) -> schemas.LivestreamDetail | None:
        """Set the Livestream Stopped: the operator removes its connector; resource, row and events stay."""
        found = await self.find(workspace_id, livestream_id)
        if found is None:
            return None
        patched = await self._kube.patch_spec(
            resources.name(found), resources.uid(found), {"state": DesiredState.STOPPED.value}
        )
        if patched is None:
            return None
        return schemas.LivestreamDetail(**await self._detail(workspace_id, patched))

    async def delete(self, workspace_id: str, livestream_id: uuid.UUID) -> bool:
        found = await self.find(workspace_id, livestream_id)
        if found is None:
            return False
        deleted = await self._kube.delete(resources.name(found), resources.uid(found))
        self._names.pop(str(livestream_id), None)
        return deleted

    # -- queries -----------------------------------------------------------------------------

    async def get(self, workspace_id: str, livestream_id: uuid.UUID) -> schemas.LivestreamDetail | None:
        found = await self.find(workspace_id, livestream_id)
        return schemas.LivestreamDetail(**await self._detail(workspace_id, found)) if found is not None else None

    async def page(
        self,
        workspace_id: str,
        *,
        phases: set[str] | None,
        username: str | None,
        cursor: str | None,
        limit: int,
    ) -> schemas.LivestreamsPage:
        """Raises ValueError for a cursor this API did not make."""
        after = resources.decode_list_cursor(cursor) if cursor is not None else None
        listed = await self._kube.list(resources.workspace_selector(workspace_id, username))
        page, next_key = resources.select_page(listed, phases=phases, username=username, after=after, limit=limit)
        async with self._pool.acquire() as conn:
            found_rows = await repository.livestream_rows(
                conn, [uuid.UUID(resources.uid(item)) for item in page], workspace_id
            )
        items = [
            schemas.LivestreamPublic(**resources.view(item, found_rows.get(uuid.UUID(resources.uid(item)))))
            for item in page
        ]
        return schemas.LivestreamsPage(
            items=items, next_cursor=resources.encode_list_cursor(next_key) if next_key else None
        )

    async def owns_history(self, workspace_id: str, livestream_id: uuid.UUID) -> bool:
        """Its row or its resource is in the workspace (history outlives a deleted resource)."""
        if await self._row(workspace_id, str(livestream_id)) is not None:
            return True
        return await self.find(workspace_id, livestream_id) is not None

    async def history(
        self,
        livestream_id: uuid.UUID,
        *,
        cursor: str | None,
        limit: int,
        types: Sequence[str] | None,
        since: dt.datetime | None,
        until: dt.datetime | None,
    ) -> schemas.EventsPage:
        """Stored events; call `owns_history` first. Raises ValueError for a cursor this API did not make."""
        after = events_table.Cursor.decode(cursor) if cursor is not None else None
        async with self._pool.acquire() as conn:
            page = await events_repository.events_page(
                conn, livestream_id, after=after, limit=limit, types=types, since=since, until=until
            )
        items = [
            schemas.EventPublic.model_validate(
                {
                    "id": event.event_id,
                    "type": event.event_type,
                    "timestamp": event.timestamp,
                    "received_at": event.received_at,
                    "event": orjson.loads(event.payload),
                }
            )
            for event in page.events
        ]
        return schemas.EventsPage(items=items, next_cursor=page.next_cursor.encode() if page.next_cursor else None)

    # -- for the SSE feeds -------------------------------------------------------------------

    async def end_reason(self, livestream_id: str) -> str | None:
        """Why the livestream is over (feeds.STOPPED/ENDED/FAILED/DELETED), or None while it goes on.

        Only called for livestreams a subscriber was authorised for (so their name is cached).
        """
        name = self._names.get(livestream_id)
        if name is None:
            return None
        try:
            found = await self._kube.get(name)
        except (kube.ApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("could not read a livestream's phase", extra={"error": repr(exc)})
            return None
        if found is None or resources.uid(found) != livestream_id:
            return feeds.DELETED
        phase = resources.phase(found)
        return _END_REASONS.get(Phase(phase)) if phase else None


def _invalid(exc: kube.ApiError) -> Invalid:
    """Our words for the API server's refusal of a spec; its own (resource paths, CEL text) go to the log."""
    log.warning("kubernetes refused a livestream's spec", extra={"reason": exc.reason, "error": exc.message})
    return Invalid("the livestream's settings were refused by the cluster's validation")
