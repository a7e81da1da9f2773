"""Checks of a CronWorkflow's schedule and time zone, with one-line errors naming the option."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from lamflow.workflows.errors import UsageError

# what Argo's cron library (robfig/cron) accepts besides five fields
DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_EVERY = re.compile(r"^@every ([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")


def check_schedule(schedule: str) -> str:
    """``schedule`` if Argo will accept it: five cron fields, a descriptor (@daily ...) or @every 6h."""
    from croniter import croniter

    text = " ".join(schedule.split())
    if text in DESCRIPTORS or _EVERY.match(text):
        return text
    if len(text.split(" ")) == 5 and croniter.is_valid(text):
        return text
    raise UsageError(
        f"--schedule {schedule!r}: not a cron schedule (five fields 'minute hour day month weekday' such as "
        f"'0 3 * * 1', a descriptor such as @daily, or @every 6h)"
    )


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA zone (ZoneInfo alone would also take a file path below its search path)."""
    try:
        ZoneInfo(name)
        known = name == "UTC" or name in available_timezones()
    except (ZoneInfoNotFoundError, ValueError):
        known = False
    if not known:
        raise UsageError(
            f"--timezone {name!r}: not an IANA time zone (e.g. UTC, Europe/Berlin, Asia/Shanghai)"
        )
    return name
