"""Protocol-faithful TikTok LIVE simulator that the real TikTokLive client connects to.

See ``server.py`` for how to point TikTokLive at it and ``scenario.py`` for what a room can do.
"""

from .config import SimulatorConfig
from .scenario import Scenario
from .server import SimulatorServer, serve

__all__ = ["Scenario", "SimulatorConfig", "SimulatorServer", "serve"]
