"""One row per paged endpoint: adding an endpoint is adding a row here.

Everything that differs between the paged endpoints lives in its `Endpoint`;
the request builder, the decoder and the paginator read these rows and hold
no endpoint-specific code.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import attrs

from ._records import Activity, Opportunity

__all__ = ["ACTIVITIES_OF_OPPORTUNITY", "OPPORTUNITIES_OF_LEAD", "Endpoint"]

R = TypeVar("R")


@attrs.frozen
class Endpoint(Generic[R]):
    """A paged POST endpoint of the API.

    Attributes:
        name: the session method that calls it.
        path: the path under the base URL (``https://{host}/v2/``).
        id_parameter: the query parameter naming whose rows to list.
        filter_parameter: the optional query parameter that narrows the rows.
        id_key: the row key that identifies a row, used to drop a row seen twice.
        required_columns: the keys a record cannot do without; added to any
            narrowed ``columns`` (the id first).
        record_class: what each row is structured into.
        default_page_size: rows the API returns when no Paging is sent.
        max_page_size: the largest page the API is known to honour; a server
            that clamps lower is detected while paging.
    """

    name: str
    path: str
    id_parameter: str
    filter_parameter: str
    id_key: str
    record_class: type[R]
    default_page_size: int
    required_columns: tuple[str, ...]
    max_page_size: int = 1000

    def __repr__(self) -> str:
        return f"<Endpoint {self.path}>"


OPPORTUNITIES_OF_LEAD: Endpoint[Opportunity] = Endpoint(
    name="opportunities_of_lead",
    path="OpportunityManagement.svc/GetOpportunitiesOfLead",
    id_parameter="leadId",
    filter_parameter="opportunityType",
    id_key="OpportunityId",
    record_class=Opportunity,
    default_page_size=100,
    required_columns=("OpportunityId", "ProspectId"),
)

ACTIVITIES_OF_OPPORTUNITY: Endpoint[Activity] = Endpoint(
    name="activities_of_opportunity",
    path="OpportunityManagement.svc/GetActivitiesOfOpportunity",
    id_parameter="opportunityId",
    filter_parameter="activityEventCode",
    id_key="ProspectActivityId",
    record_class=Activity,
    default_page_size=25,
    required_columns=("ProspectActivityId", "ProspectId"),
)

ENDPOINTS: tuple[Endpoint[Any], ...] = (OPPORTUNITIES_OF_LEAD, ACTIVITIES_OF_OPPORTUNITY)
