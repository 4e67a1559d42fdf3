"""``python -m tiktok_service_dev.node_agent --kubeconfig ... --node-name ...``."""

import sys

from tiktok_service_dev.node_agent.cli import main

sys.exit(main())
