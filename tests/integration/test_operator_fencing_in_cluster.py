"""The operator on a real API server: a connector that exits fenced (18) is replaced, never counted as a failure."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.integration.test_operator_in_cluster import (  # noqa: F401 - fixtures are used by name
    DEADLINE_S,
    Cluster,
    api,
    cluster,
    control_plane,
    livestream,
    migrated_database,
    namespace,
    operator,
    operator_settings,
)
from tests.support import wait_until
from tiktok_service.domain.exit_codes import ExitCode
from tiktok_service.operator import model
from tiktok_service_dev import operator_harness

pytestmark = pytest.mark.slow


async def test_a_fenced_connector_is_replaced_at_once_however_often_without_reaching_the_restart_limit(
    operator: operator_harness.OperatorThread,  # noqa: F811
    cluster: Cluster,  # noqa: F811
) -> None:
    policy = {"maxRestarts": 1, "backoffBaseSeconds": 60, "backoffCapSeconds": 60}
    cluster.create(livestream("frank", restartPolicy=policy))
    for attempt in range(1, 4):  # more fenced exits than maxRestarts allows failures
        await wait_until(lambda: cluster.pod("frank") is not None, timeout=DEADLINE_S, what=f"pod {attempt}")
        previous = cluster.pod("frank")
        assert previous is not None
        env = {var.name: var.value_from for var in previous.spec.containers[0].env}
        assert env["CONNECTOR_POD_UID"].field_ref.field_path == "metadata.uid"
        cluster.run_pod("frank")
        cluster.finish_pod("frank", int(ExitCode.FENCED), dt.datetime.now(dt.UTC))

        def replaced(old: str = previous.metadata.uid) -> bool:
            pod = cluster.pod("frank")
            return pod is not None and pod.metadata.uid != old

        # A backoff of 60 s would outlast the deadline: the replacement comes at once.
        await wait_until(replaced, timeout=DEADLINE_S, what=f"the replacement of fenced pod {attempt}")
        pod = cluster.pod("frank")
        assert pod is not None and pod.metadata.annotations[model.ANNOTATION_RESTARTS] == "0"

    status = cluster.status("frank")
    assert status.get("phase") != "Failed" and int(status.get("restarts") or 0) == 0
