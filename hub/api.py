"""The HTTP API: telemetry's routes behind sign-in, with the session (browsers) or a token (scripts)."""
from ninja import NinjaAPI
from ninja.errors import ValidationError

from accounts.auth import SessionAuth, TokenAuth
from alarms.api import router as alarms_router
from alarms.destinations_api import router as destinations_router
from devices.api import router as devices_router
from telemetry.api import router as telemetry_router

api = NinjaAPI(
    title="Telehub API",
    version="1",
    description="Devices, their readings over time, commands, and alarms. Authenticate with the session "
    "cookie or `Authorization: Bearer <token>` (tokens are made on /account/tokens/).",
    auth=[TokenAuth(), SessionAuth()],
    docs_url=None,  # The interactive docs page loads its scripts from a CDN; the schema is at openapi.json.
    urls_namespace="api",
)
api.add_router("", telemetry_router)
api.add_router("", devices_router)
api.add_router("", alarms_router)
api.add_router("", destinations_router)


@api.exception_handler(ValidationError)
def bad_request(request, exc):
    """Parameters that fail validation are a 400 naming each problem."""
    problems = [{"where": ".".join(map(str, error["loc"])), "problem": error["msg"]} for error in exc.errors]
    return api.create_response(request, {"detail": problems}, status=400)
