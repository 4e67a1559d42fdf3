"""Local node agent: a kubelet stand-in running pods as local processes (dev and tests only).

Layout: ``status``, ``env``, ``node`` and ``times`` are pure decisions (unit-tested);
``kube`` is the API client; ``container`` and ``pod`` run processes and write status;
``agent`` ties them to a Node; ``cli`` is ``tiktok-service-dev node-agent``.
"""

from tiktok_service_dev.node_agent.agent import NodeAgent, NodeAgentError, host_environment
from tiktok_service_dev.node_agent.cli import main

__all__ = ["NodeAgent", "NodeAgentError", "host_environment", "main"]
