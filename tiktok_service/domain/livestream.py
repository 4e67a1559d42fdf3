"""The `Livestream` resource as every component names it: group, version, kind, phases, labels.

The operator reconciles it, the API serves it, the connector pods carry its labels; none of
them imports another for these names, so they live here (pure, no Kubernetes client). The
CRD (`tiktok_service/crds/livestream.yaml`) must agree: a unit test compares them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

GROUP: Final = "tiktok.tiktok-service.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "Livestream"
PLURAL: Final = "livestreams"

#: The connector pod of a Livestream: its container's name and its `app.kubernetes.io/name`.
CONTAINER: Final = "connector"
CONNECTOR_APP: Final = "tiktok-connector"
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_LIVESTREAM: Final = "tiktok-service.io/livestream"
LABEL_USERNAME: Final = "tiktok-service.io/username"


class Phase(StrEnum):
    """`status.phase` of a Livestream (the CRD's enum)."""

    PENDING = "Pending"
    WAITING_FOR_LIVE = "WaitingForLive"
    CONNECTING = "Connecting"
    LIVE = "Live"
    RECONNECTING = "Reconnecting"
    BACKING_OFF = "BackingOff"
    PAUSED = "Paused"
    STOPPED = "Stopped"
    ENDED = "Ended"
    FAILED = "Failed"


#: Phases the operator does not leave on its own: only a spec change (new generation) restarts.
TERMINAL_PHASES: Final = frozenset({Phase.ENDED, Phase.FAILED})


class DesiredState(StrEnum):
    """`spec.desiredState`: what the owner asks for (the CRD's enum)."""

    RUNNING = "Running"
    PAUSED = "Paused"
    STOPPED = "Stopped"
