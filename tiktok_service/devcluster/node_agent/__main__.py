"""``python -m tiktok_service.devcluster.node_agent --kubeconfig ... --node-name ...``."""

import sys

from tiktok_service.devcluster.node_agent.cli import main

sys.exit(main())
