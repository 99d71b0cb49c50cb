"""An async web backend endpoint that returns a lead's opportunities (Starlette).

    GET /leads/{lead_id}/opportunities?limit=100

answers ``{"lead_id": ..., "count": N, "opportunities": [...]}``, newest first.

The app makes one `Session` when it starts and closes it when it stops, so every
request shares its connections and its rate limit: however many requests come
in, LeadSquared never sees more than the plan allows, and the requests beyond
it wait for a slot. Each request waits at most ``LSQ_DEADLINE`` seconds (10 by
default), slot included, and then gets a 504 rather than hang.

Run it against the emulator (``leadsq-async emulator`` prints the variables to
set), then ask it for a lead::

    export LSQ_HOST=http://127.0.0.1:8000 LSQ_ACCESS_KEY=... LSQ_SECRET_KEY=...
    python examples/web_backend.py --port 8080
    curl 'http://127.0.0.1:8080/leads/bc3548c5-5d46-49ba-b777-40fcc70312b9/opportunities?limit=3'

Needs ``pip install leadsq-async starlette uvicorn``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import leadsq_async as lsq

MAX_LIMIT = 1000


@dataclass(frozen=True)
class Settings:
    """What the app needs to reach LeadSquared."""

    access_key: str
    secret_key: str
    host: str
    rate_limit: lsq.RateLimit
    deadline: float

    @classmethod
    def from_env(cls) -> Settings:
        """Read LSQ_ACCESS_KEY, LSQ_SECRET_KEY, LSQ_HOST, LSQ_RATE_LIMIT and LSQ_DEADLINE."""
        return cls(
            access_key=os.environ["LSQ_ACCESS_KEY"],
            secret_key=os.environ["LSQ_SECRET_KEY"],
            host=os.environ.get("LSQ_HOST", "api.leadsquared.com"),
            rate_limit=lsq.RateLimit.parse(os.environ.get("LSQ_RATE_LIMIT", "25/5")),
            deadline=float(os.environ.get("LSQ_DEADLINE", "10")),
        )


def create_app(settings: Settings) -> Starlette:
    """The Starlette app, with one LeadSquared session for its whole life."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with lsq.Session(
            settings.access_key,
            settings.secret_key,
            host=settings.host,
            rate_limit=settings.rate_limit,
        ) as session:
            app.state.leadsquared = session
            app.state.deadline = settings.deadline
            yield

    return Starlette(
        routes=[Route("/leads/{lead_id}/opportunities", lead_opportunities)],
        lifespan=lifespan,
    )


async def lead_opportunities(request: Request) -> JSONResponse:
    """GET /leads/{lead_id}/opportunities?limit=N: the lead's newest N opportunities."""
    session: lsq.Session = request.app.state.leadsquared
    lead_id = request.path_params["lead_id"]
    try:
        limit = int(request.query_params.get("limit", "100"))
    except ValueError:
        return _error(400, "limit must be an integer")
    if not 1 <= limit <= MAX_LIMIT:
        return _error(400, f"limit must be between 1 and {MAX_LIMIT}")

    walk = session.opportunities_of_lead(lead_id, limit=limit)
    try:
        # wait_for cancels the walk when the deadline passes, pages fetched ahead included.
        opportunities = await asyncio.wait_for(walk.collect(), request.app.state.deadline)
    except asyncio.TimeoutError:
        return _error(504, "LeadSquared did not answer in time")
    except lsq.APIError as error:
        # LeadSquared sends "Lead does not exist in the system" as a business error.
        if "does not exist" in (error.exception_message or ""):
            return _error(404, f"no lead {lead_id}")
        return _error(502, f"LeadSquared refused the call: {error.exception_message}")
    except lsq.RateLimitError:
        # Something else uses the account's budget; tell the client when to come back.
        return _error(503, "LeadSquared's rate limit is spent", {"Retry-After": "5"})
    except lsq.LeadSquaredError as error:
        # The message never holds the secret key, but it is LeadSquared's business:
        # a real app would log it and answer without it.
        return _error(502, f"LeadSquared failed: {error}")

    return JSONResponse(
        {
            "lead_id": lead_id,
            "count": len(opportunities),
            "opportunities": [_opportunity_json(opportunity) for opportunity in opportunities],
        }
    )


def _opportunity_json(opportunity: lsq.Opportunity) -> dict[str, Any]:
    created_on = opportunity.created_on
    return {
        "id": opportunity.opportunity_id,
        "status": opportunity.status,
        "type": opportunity.opportunity_event,
        "owner": opportunity.owner_name,
        "created_on": created_on.isoformat() if created_on else None,
        # Custom fields mean what your account makes them mean: pass them on as sent.
        "custom": {key: value for key, value in opportunity.extra.items() if "mx_" in key},
    }


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the app with uvicorn until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Serve GET /leads/{lead_id}/opportunities.")
    parser.add_argument("--bind", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="the port to listen on")
    args = parser.parse_args(argv)
    uvicorn.run(create_app(Settings.from_env()), host=args.bind, port=args.port)


if __name__ == "__main__":
    main()
