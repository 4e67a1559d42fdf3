"""What each connector exit and report means for its Livestream: phases and reasons (pure tables).

`lifecycle` decides with these; they are kept apart so that the README's failure table and
the connector's exit codes (`domain.exit_codes`) can be read against one short list.
"""

from __future__ import annotations

from tiktok_service.domain.connector_status import ConnectorPhase
from tiktok_service.domain.exit_codes import ExitCode
from tiktok_service.domain.livestream import Phase

FINAL_EXITS: dict[int, tuple[Phase, str, str]] = {
    ExitCode.LIVE_ENDED: (Phase.ENDED, "LiveEnded", "the streamer ended the LIVE"),
    ExitCode.USER_OFFLINE: (Phase.ENDED, "UserOffline", "the user is not live (waitForLive is false)"),
    ExitCode.USER_NOT_FOUND: (
        Phase.FAILED,
        "UserNotFound",
        "no such TikTok user, or the user cannot go LIVE (answered several times in a row)",
    ),
    ExitCode.BLOCKED: (
        Phase.FAILED,
        "Blocked",
        "TikTok rejected the WebSocket handshake (detected); use another egress IP/proxy or a session",
    ),
    ExitCode.AGE_RESTRICTED: (
        Phase.FAILED,
        "AgeRestricted",
        "the LIVE is age-restricted: it needs a logged-in session (sessionid) of an adult account",
    ),
    ExitCode.CONFIG: (
        Phase.FAILED,
        "InvalidConfiguration",
        "the connector rejected its configuration (or the sign server rejected the API key)",
    ),
}
#: Exits restarted with backoff, with their own reason instead of the pod's ("Error").
RESTART_REASONS: dict[int, tuple[str, str]] = {
    ExitCode.CAPTCHA: ("CaptchaRequired", "TikTok answers a captcha/verification page instead of the room"),
    ExitCode.PROXY: ("ProxyFailed", "the proxies could not be opened"),
}
QUOTA_REASON = "SignQuotaExhausted"
#: Exit 0 (SIGTERM) of a pod nobody deleted: its kubelet stopped it. Two causes record nothing in
#: the status when the connector exits 0 in time (only the pod's Events say which): a failed
#: liveness probe (`restartPolicy: Never`, so the pod ends), or an eviction for the pod's own
#: ephemeral-storage limit. Both are the pod's own doing, so it counts, with what can be said.
STOPPED_BY_NODE = (
    "StoppedByNode",
    "its node stopped the connector (SIGTERM, exit code 0) without saying why in the pod's status;"
    " a failed liveness probe or an eviction for the pod's own ephemeral-storage limit does that:"
    " see the pod's events (Unhealthy, Killing or Evicted)",
)
#: The reason of a pass that recreates a failed connector's pod now.
RESTARTING = "Restarting"
#: The connector's reasons (`outcomes.Kind`) as Livestream reasons while it retries.
REASONS: dict[str, str] = {
    "user_not_found": "UserNotFound",
    "captcha": "CaptchaRequired",
    "blocked": "Blocked",
    "age_restricted": "AgeRestricted",
    "rate_limited": "SignRateLimited",
    "tiktok_rate_limited": "TikTokRateLimited",
    "sign_rejected": "SignKeyRejected",
    "sign_error": "SignServerError",
    "proxy_error": "ProxyFailed",
    "closed": "ConnectionClosed",
    "stalled": "Stalled",
    "session_cap": "SessionCapReached",
    "connection_closed": "ConnectionLost",
    "ws_rejected": "HandshakeRejected",
    "timeout": "Timeout",
    "network": "NetworkError",
    "room_lookup": "RoomLookupFailed",
    "config": "InvalidConfiguration",
    "offline": "UserOffline",
    "live_end": "LiveEnded",
    "fenced": "Superseded",
    "error": "Error",
}
FROM_CONNECTOR: dict[ConnectorPhase, tuple[Phase, str]] = {
    ConnectorPhase.CONNECTING: (Phase.CONNECTING, "Connecting"),
    ConnectorPhase.LIVE: (Phase.LIVE, "Connected"),
    ConnectorPhase.RECONNECTING: (Phase.RECONNECTING, "Reconnecting"),
    ConnectorPhase.WAITING: (Phase.WAITING_FOR_LIVE, "UserOffline"),
    ConnectorPhase.ENDED: (Phase.ENDED, "LiveEnded"),
    ConnectorPhase.FAILED: (Phase.CONNECTING, "ConnectorFailing"),
    ConnectorPhase.STOPPED: (Phase.CONNECTING, "ConnectorStopping"),
}
