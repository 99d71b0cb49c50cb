"""The per-lead endpoints, GetOpportunitiesOfLead and GetActivitiesOfOpportunity: one lead's
opportunities, one opportunity's activities, from the same account the feeds serve."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from leadsq_async.testing._account import Account
from leadsq_async.testing._config import EmulatorConfig
from leadsq_async.testing._query import INVALID_INPUT, ApiError, ListQuery
from leadsq_async.testing._rows import Row


@attrs.frozen
class PerLead:
    """One per-lead endpoint. The emulator keeps its own table, apart from the client's, so a
    wrong path or parameter name in the client fails against it instead of agreeing with it."""

    kind: Literal["opportunity", "activity"]
    id_param: str
    filter_param: str
    filter_key: str
    keep: tuple[str, ...]  # the row id first, then the other keys Include_CSV never removes
    default_size: int
    entity: str


OPPORTUNITIES_OF_LEAD = PerLead(
    kind="opportunity",
    id_param="leadId",
    filter_param="opportunityType",
    filter_key="OpportunityEvent",
    keep=("OpportunityId", "ProspectId"),
    default_size=100,
    entity="Lead",
)
ACTIVITIES_OF_OPPORTUNITY = PerLead(
    kind="activity",
    id_param="opportunityId",
    filter_param="activityEventCode",
    filter_key="ActivityEvent",
    keep=("ProspectActivityId", "ProspectId"),
    default_size=25,
    entity="Opportunity",
)


def list_of(
    endpoint: PerLead,
    account: Account,
    query: Mapping[str, str],
    body: Mapping[str, Any],
    config: EmulatorConfig,
) -> object:
    """The page ``body`` asks for of the entity named in ``query``, ``{RecordCount, List}``.

    Raises:
        ApiError: the 500 envelope for a missing or unknown id, or a bad body.
    """
    entity_id = query.get(endpoint.id_param.casefold(), "").strip()
    if not entity_id:
        raise ApiError(500, INVALID_INPUT, f"Invalid Input! Parameter Name: {endpoint.id_param}")
    selection = ListQuery.from_body(
        body,
        default_size=endpoint.default_size,
        cap=config.page_size_cap,
        cap_mode=config.page_size_cap_mode,
    )
    with account.lock:
        rows = _rows(endpoint, account, entity_id, config)
        wanted = query.get(endpoint.filter_param.casefold(), "").strip()
        if wanted:
            rows = [row for row in rows if str(row.get(endpoint.filter_key)) == wanted]
        record_count, page = selection.select(rows, keep=endpoint.keep)
        if page:
            for _ in range(config.insert_ahead):
                if endpoint.kind == "opportunity":
                    account.data.add_opportunity(entity_id)
                else:
                    account.data.add_activity(entity_id)
    return {"RecordCount": record_count, "List": page}


def _rows(endpoint: PerLead, account: Account, entity_id: str, config: EmulatorConfig) -> list[Row]:
    data = account.data
    table = data.opportunities if endpoint.kind == "opportunity" else data.activities
    rows = table.get(entity_id)
    if rows is None:
        message = f"{endpoint.entity} does not exist in the system"
        raise ApiError(500, INVALID_INPUT, message)
    if endpoint.kind == "opportunity" and config.index_lag:
        now = account.clock.monotonic()
        rows = [row for row in rows if _indexed(account, row, now, config.index_lag)]
    return list(rows)


def _indexed(account: Account, row: Row, now: float, lag: float) -> bool:
    opportunity_id = row.get("OpportunityId")
    added = account.data.added_at(opportunity_id) if isinstance(opportunity_id, str) else None
    return added is None or added + lag <= now
