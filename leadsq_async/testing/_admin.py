"""The emulator's admin route, ``/_emulator/account``: a test that has only the server's URL
changes the account over HTTP, as ``EmulatorApp.account`` does in Python. ``POST`` a JSON
body ``{"action": <an Account method's name>, <its arguments>, "fields": {...}}`` to call
it, answered ``{"now": ..., "row": ...}``; ``GET`` answers the emulator's now and the
account's counts. Both need the account's keys; neither counts against the rate limits or in
the statistics.
"""

from __future__ import annotations

import json
from typing import Any

from leadsq_async.testing._account import Account, UnknownRecordError
from leadsq_async.testing._answers import Answer, json_answer

ADMIN_PATH = "/_emulator/account"
ACTIONS: dict[str, tuple[str, ...]] = {
    "add_lead": ("lead_id",),
    "add_opportunity": ("lead_id", "event_code"),
    "add_activity": ("lead_id", "opportunity_id"),
    "modify_lead": ("lead_id",),
    "modify_opportunity": ("opportunity_id",),
    "modify_activity": ("activity_id",),
    "delete_lead": ("lead_id",),
    "delete_opportunity": ("opportunity_id",),
    "delete_activity": ("activity_id",),
}
"""Each action the route takes -> the arguments it reads beside ``fields``."""


def _failure(status: int, message: str) -> Answer:
    return json_answer(status, {"Status": "Error", "Message": message})


def _now(account: Account) -> str:
    return f"{account.now():%Y-%m-%d %H:%M:%S}"


def admin(account: Account, method: str, raw: bytes) -> Answer:
    """Answer one admin request (the keys already checked)."""
    if method == "GET":
        with account.lock:
            data = account.data
            counts = {
                "leads": len(data.opportunities),
                "opportunities": sum(map(len, data.opportunities.values())),
                "activities": data.activity_count(),
            }
        return json_answer(200, {"now": _now(account), **counts})
    if method != "POST":
        return _failure(405, "the admin route takes GET or POST")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return _failure(400, "the body must be a JSON object")
    if not isinstance(body, dict):
        return _failure(400, "the body must be a JSON object")
    action = body.get("action")
    if action not in ACTIONS:
        return _failure(400, f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    fields = body.get("fields", {})
    if not isinstance(fields, dict):
        return _failure(400, "fields must be a JSON object")
    unknown = set(body) - {"action", "fields", *ACTIONS[action]}
    if unknown:
        return _failure(400, f"{action} takes no {', '.join(sorted(unknown))}")
    arguments: dict[str, Any] = {name: body[name] for name in ACTIONS[action] if name in body}
    try:
        row = getattr(account, action)(**arguments, **fields)
    except UnknownRecordError as error:
        return _failure(404, str(error.args[0]))
    except (TypeError, ValueError) as error:
        return _failure(400, str(error))
    return json_answer(200, {"now": _now(account), "row": row})
