"""The API's notification destinations: where a user's alarm notifications go, and the log of
what each was sent. A user sees and deletes only their own; anyone else's is a 404.

A webhook's secret is shown in full only in the answer that creates it (the hub makes one when
none is given); afterwards only its last four characters."""
import secrets
from typing import Literal

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.shortcuts import get_object_or_404
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import ValidationError

from alarms.models import DeliveryAttempt, NotificationDestination
from alarms.transports import check_webhook_url
from telemetry.events import to_ms

router = Router(tags=["notifications"])

MAX_DESTINATIONS_PER_USER = 50
MAX_ADDRESSES = 20
SECRET_MIN_LENGTH = 16
SECRET_SHOWN = 4
WEBHOOK, EMAIL = NotificationDestination.Kind.WEBHOOK, NotificationDestination.Kind.EMAIL


class DestinationIn(Schema):
    kind: Literal["webhook", "email"]
    name: str = Field("", max_length=200)
    url: str | None = Field(None, max_length=2000)
    secret: str | None = Field(None, min_length=SECRET_MIN_LENGTH, max_length=200)
    to: list[str] | None = Field(None, min_length=1, max_length=MAX_ADDRESSES)


class DeliveriesQuery(Schema):
    limit: int = Field(50, ge=1, le=500)


def refuse(field, problem):
    """A 400 naming `field`, in the shape of every other validation error (hub/api.py)."""
    return ValidationError([{"loc": ("body", "payload", field), "msg": problem}])


def destination_json(destination, secret=None):
    shown = {"id": destination.pk, "kind": destination.kind, "name": destination.name, "created": to_ms(destination.created)}
    if destination.kind == WEBHOOK:
        shown["url"] = destination.url
        shown["secret"] = secret or "…" + destination.secret[-SECRET_SHOWN:]
    else:
        shown["to"] = destination.to
    return shown


def checked(payload):
    """The fields of a new destination of `payload`'s kind; a 400 naming any that is wrong."""
    if payload.kind == WEBHOOK:
        if payload.to is not None:
            raise refuse("to", "a webhook has no addresses")
        if not payload.url:
            raise refuse("url", "a webhook needs a url")
        try:
            check_webhook_url(payload.url, settings.WEBHOOK_ALLOW_PRIVATE)
        except ValueError as problem:
            raise refuse("url", f"{payload.url!r} {problem}") from None
        return {"url": payload.url, "secret": payload.secret or secrets.token_urlsafe(32)}
    if payload.url is not None or payload.secret is not None:
        raise refuse("url" if payload.url is not None else "secret", "an email destination has only addresses, in `to`")
    if not payload.to:
        raise refuse("to", "an email destination needs at least one address")
    for address in payload.to:
        try:
            if len(address) > 254:
                raise DjangoValidationError("too long")
            validate_email(address)
        except DjangoValidationError:
            raise refuse("to", f"{address[:254]!r} is not an email address") from None
    return {"to": list(dict.fromkeys(payload.to))}


@router.get("/notification-destinations/", summary="Your notification destinations")
def list_destinations(request):
    return [destination_json(destination) for destination in request.auth.notification_destinations.all()]


@router.post(
    "/notification-destinations/", response={201: dict},
    summary="Add a destination: a webhook (its secret is shown in full only now) or email addresses",
)
def create_destination(request, payload: DestinationIn):
    fields = checked(payload)
    if request.auth.notification_destinations.count() >= MAX_DESTINATIONS_PER_USER:
        raise refuse("kind", f"you have {MAX_DESTINATIONS_PER_USER} destinations, the most one may have")
    destination = NotificationDestination.objects.create(
        owner=request.auth, kind=payload.kind, name=payload.name, **fields
    )
    return Status(201, destination_json(destination, secret=destination.secret or None))


def own_destination(request, destination_id):
    return get_object_or_404(NotificationDestination, pk=destination_id, owner=request.auth)


@router.get("/notification-destinations/{destination_id}/", summary="One of your destinations")
def get_destination(request, destination_id: int):
    return destination_json(own_destination(request, destination_id))


@router.delete("/notification-destinations/{destination_id}/", response={204: None},
               summary="Delete a destination; rules stop sending to it, and what waits for it is dropped")
def delete_destination(request, destination_id: int):
    own_destination(request, destination_id).delete()
    return Status(204, None)


@router.get(
    "/notification-destinations/{destination_id}/deliveries",
    summary="The delivery log: each try at sending to this destination and its answer, newest first",
)
def list_deliveries(request, destination_id: int, query: Query[DeliveriesQuery]):
    destination = own_destination(request, destination_id)
    attempts = DeliveryAttempt.objects.filter(notification__destination=destination).select_related("notification")
    return [
        {
            "at": to_ms(attempt.at), "ok": attempt.ok, "answer": attempt.answer,
            "notification": {
                "id": attempt.notification_id, "event": attempt.notification.event,
                "status": attempt.notification.status, "attempts": attempt.notification.attempts,
            },
        }
        for attempt in attempts[:query.limit]
    ]
