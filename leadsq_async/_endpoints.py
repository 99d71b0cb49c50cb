"""One row per paged endpoint: adding an endpoint is adding a row here.

Everything that differs between the paged endpoints lives in its `Endpoint`;
the request builder, the decoder and the paginator read these rows and hold
no endpoint-specific code.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from ._checks import check_text
from ._records import Activity, Opportunity

if TYPE_CHECKING:
    from ._leads import Lead

__all__ = [
    "ACTIVITIES_BY_EVENT",
    "ACTIVITIES_MODIFIED",
    "ACTIVITIES_OF_OPPORTUNITY",
    "LEADS_MODIFIED",
    "OPPORTUNITIES_BY_ID",
    "OPPORTUNITIES_BY_SEARCH",
    "OPPORTUNITIES_OF_LEAD",
    "Endpoint",
    "raw_endpoint",
]

R = TypeVar("R")


@attrs.frozen
class Endpoint(Generic[R]):
    """A paged POST endpoint of the API.

    Attributes:
        name: the session method that calls it.
        path: the path under the base URL (``https://{host}/v2/``).
        id_parameter: the query parameter naming whose rows to list.
        filter_parameter: the optional query parameter that narrows the rows.
        id_key: the row key that identifies a row, used to drop a row seen twice
            (empty for an endpoint whose rows have none: the whole row then does).
        required_columns: the keys a record cannot do without; added to any
            narrowed ``columns`` (the id first).
        record_class: what each row is structured into.
        default_page_size: rows the API returns when no Paging is sent.
        max_page_size: the largest page the API is known to honour; a server
            that clamps lower is detected while paging.
        list_key: the key of the answer that holds the rows; ``[*].Key`` for an
            answer that is a JSON array of groups, each with its ``RecordCount``
            and its rows under ``Key``.
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
    list_key: str = "List"

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

# The account-wide feeds: no id in the query string; what they select goes in the body.
# Their rows are told apart by id across time windows too (see _feeds).
# LEADS_MODIFIED, the leads feed's row, is made on first import (`_leads_modified`).

ACTIVITIES_MODIFIED: Endpoint[Activity] = Endpoint(
    name="activities_modified",
    path="ProspectActivity.svc/RetrieveRecentlyModified",
    id_parameter="",
    filter_parameter="",
    id_key="Id",
    record_class=Activity,
    default_page_size=100,
    required_columns=(),
    list_key="ProspectActivities",
)

ACTIVITIES_BY_EVENT: Endpoint[Activity] = Endpoint(
    name="activities_modified",
    path="ProspectActivity.svc/CustomActivity/RetrieveByActivityEvent",
    id_parameter="",
    filter_parameter="",
    id_key="ProspectActivityId",
    record_class=Activity,
    default_page_size=100,
    required_columns=(),
)

OPPORTUNITIES_BY_SEARCH: Endpoint[Opportunity] = Endpoint(
    name="opportunities_of_type",
    path="OpportunityManagement.svc/Retrieve/BySearchParameter",
    id_parameter="",
    filter_parameter="",
    id_key="",  # OpportunityId or ProspectActivityId, whichever the row has (see _feeds)
    record_class=Opportunity,
    default_page_size=10,
    required_columns=("ProspectActivityId", "ProspectId", "ModifiedOn"),
)

OPPORTUNITIES_BY_ID: Endpoint[Opportunity] = Endpoint(
    name="opportunities_by_id",
    path="OpportunityManagement.svc/GetOpportunitiesById",
    id_parameter="",
    filter_parameter="",
    id_key="ProspectActivityId",
    record_class=Opportunity,
    default_page_size=2000,
    required_columns=("ProspectActivityId", "ProspectId"),
    max_page_size=2000,  # documented: "a maximum of 2,000 opportunities"
    list_key="[*].Opportunities",
)


def raw_endpoint(path: object, list_key: object = "List") -> Endpoint[dict[str, Any]]:
    """The row for any list endpoint that pages with ``PageIndex``/``PageSize``.

    Raises:
        TypeError: a path or list key that is not a str.
        ValueError: a path that is not relative to ``/v2/`` on the session's host
            (absolute, with a scheme, a query, ``..`` or a backslash).
    """
    path = check_text("path", path).strip()
    list_key = check_text("list_key", list_key)
    if not _stays_under_the_base(path):
        raise ValueError(
            f"path must be relative to /v2/, such as 'LeadManagement.svc/Leads.RecentlyModified',"
            f" not {path!r}"
        )
    return Endpoint(
        name="paginate",
        path=path,
        id_parameter="",
        filter_parameter="",
        id_key="",
        record_class=dict,
        default_page_size=1000,
        required_columns=(),
        list_key=list_key,
    )


def _leads_modified() -> Endpoint[Lead]:
    # The leads feed's row, made when the feeds first import it (see `__getattr__`): its
    # record class, `Lead`, is imported with the feeds, not with the session.
    from ._leads import Lead

    return Endpoint(
        name="leads_modified",
        path="LeadManagement.svc/Leads.RecentlyModified",
        id_parameter="",
        filter_parameter="",
        id_key="",  # the id is inside LeadPropertyList: the whole row tells rows apart
        record_class=Lead,
        default_page_size=100,
        required_columns=("ProspectID", "ModifiedOn"),
        max_page_size=5000,  # documented: "the maximum number of leads returned ... is 5000"
        list_key="Leads",
    )


if TYPE_CHECKING:
    LEADS_MODIFIED: Endpoint[Lead]
else:

    def __getattr__(name: str) -> Any:
        if name == "LEADS_MODIFIED":
            globals()[name] = endpoint = _leads_modified()
            return endpoint
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _stays_under_the_base(path: str) -> bool:
    """Whether ``path``, read as a relative reference (RFC 3986) against ``/v2/``, names a
    path under it: no scheme (``https:/v1``, ``localhost:80/x``), no authority
    (``//host``), no query or fragment, and, percent-decoded, no empty, ``.`` or ``..``
    segment, backslash or control character."""
    parts = urllib.parse.urlsplit(path)
    if parts.scheme or parts.netloc or parts.query or parts.fragment or "?" in path:
        return False
    decoded = urllib.parse.unquote(parts.path)
    segments = decoded.split("/")
    return (
        decoded.isprintable()
        and "\\" not in decoded
        # A colon in the first segment reads as a scheme to some parsers.
        and ":" not in segments[0]
        and all(segment not in ("", ".", "..") for segment in segments)
    )
