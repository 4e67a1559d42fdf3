"""Audience engagement: polls (start, vote updates, end) and the room's rankings (hourly/weekly rank
updates, rank texts, hourly rank rewards, game rank notices)."""

from __future__ import annotations

from collections.abc import Iterator

from .base import Draft, Stage, draft
from .shapes import Body, common, small_user, text

_POLLS = (
    ("Next game?", ("Minecraft", "Fortnite", "Just chatting")),
    ("Song for the finale?", ("Cruel Summer", "Flowers")),
)


# -- polls ------------------------------------------------------------------------------------------


def _options(labels: tuple[str, ...], votes: list[int]) -> list[Body]:
    return [
        {"votes": v, "display_content": label, "option_idx": i}
        for i, (label, v) in enumerate(zip(labels, votes, strict=True))
    ]


def poll_sequence(stage: Stage, updates: int = 4) -> Iterator[Draft]:
    """Start (``message_type`` 0), vote updates (2), end (1) - TikTokLiveJava's reading of the types."""
    title, labels = stage.rng.choice(_POLLS)
    poll_id = stage.new_id()
    votes = [0] * len(labels)
    start = stage.now_s
    operator = small_user(stage.host)
    basic: Body = {
        "title": title,
        "poll_id_str": str(poll_id),
        "poll_duration": 60,
        "time_remain": 60,
        "poll_sponsor": stage.host.nickname,
    }
    yield draft(
        "WebcastPollMessage",
        stage.host,
        common=common(),
        message_type=0,
        poll_id=poll_id,
        start_content={
            "start_time": start,
            "end_time": start + 60,
            "option_list": _options(labels, votes),
            "title": title,
            "operator": operator,
        },
        poll_kind="POLL_KIND_NORMAL",
        poll_basic_info=basic,
    )
    for step in range(updates):
        for _ in range(stage.rng.randrange(1, 8)):
            votes[stage.rng.randrange(len(labels))] += 1
        remain = max(1, 60 - (step + 1) * 60 // (updates + 1))
        yield draft(
            "WebcastPollMessage",
            None,
            common=common(),
            message_type=2,
            poll_id=poll_id,
            update_votes_content={"option_list": _options(labels, votes), "operator": operator},
            poll_kind="POLL_KIND_NORMAL",
            poll_basic_info={**basic, "user_cnt": sum(votes), "time_remain": remain},
        )
    yield draft(
        "WebcastPollMessage",
        stage.host,
        common=common(),
        message_type=1,
        poll_id=poll_id,
        end_content={"end_type": "POLL_END_BY_TIME", "option_list": _options(labels, votes), "operator": operator},
        poll_kind="POLL_KIND_NORMAL",
        poll_basic_info={**basic, "user_cnt": sum(votes), "time_remain": 0},
    )


def poll(stage: Stage) -> Draft:
    """A single poll start (for the every-kind set)."""
    return next(poll_sequence(stage))


# -- ranks ------------------------------------------------------------------------------------------


def rank_update(stage: Stage) -> Draft:
    rank = stage.rng.randrange(1, 50)
    return draft(
        "WebcastRankUpdateMessage",
        None,
        common=common(),
        updates=[
            {
                "rank_type": "TYPE_HOURLY_RANK",
                "own_rank": rank,
                "default_content": text("pm_mt_hourly_rank_entrance", f"Hourly rank No. {rank}"),
                "countdown": 1800,
                "current_score": stage.rng.randrange(100, 100_000),
            },
            {
                "rank_type": "TYPE_WEEKLY_RANK",
                "own_rank": rank * 7,
                "default_content": text("pm_mt_weekly_rank_entrance", "Weekly ranking"),
            },
        ],
        group_type="GIFT",
        op_type="ADD",
        tabs=[
            {"rank_type": "TYPE_HOURLY_RANK", "title": "Hourly"},
            {"rank_type": "TYPE_WEEKLY_RANK", "title": "Weekly"},
        ],
    )


def rank_text(stage: Stage) -> Draft:
    user = stage.viewer()
    return draft(
        "WebcastRankTextMessage",
        user,
        common=common("pm_mt_online_audience_top_n", "{0:user} is now No. 1 in the room"),
        scene="ONLINE_AUDIENCE_TOP_N_UPDATE_PUBLIC_SCREEN",
        owner_idx_before_update=3,
        owner_idx_after_update=1,
        self_get_badge_msg=text("pm_mt_online_audience_top_n_self", "You are now No. 1 in the room"),
        other_get_badge_msg=text("pm_mt_online_audience_top_n", "{0:user} is now No. 1 in the room"),
        cur_user_id=user.id,
        content=text("pm_mt_online_audience_top_n", "{0:user} is now No. 1 in the room"),
        rank_type="TYPE_HOURLY_RANK",
    )


def hourly_rank_reward(stage: Stage) -> Draft:
    user = stage.viewer()
    return draft(
        "WebcastHourlyRankRewardMessage",
        user,
        common=common(),
        winners=[
            {
                "user_id": user.id,
                "asset_id": 7_100_000_000_000_000_000 + user.id % 10**15,
                "notify": {
                    "notify_type": 1,
                    "content": f"{user.nickname} won the hourly rank reward",
                    "user": small_user(user),
                    "notify_class": 3,
                },
            }
        ],
    )


def game_rank_notify(stage: Stage) -> Draft:
    return draft(
        "WebcastGameRankNotifyMessage",
        None,
        common=common(),
        msg_type="MSG_TYPE_RANK_CHANGE",
        notify_text=text("pm_mt_game_rank_change", "You moved up to No. 8 in Gaming"),
    )
