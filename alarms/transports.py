"""How a notification reaches its destination: one class per kind, each with one `send(body)`
that returns the other end's answer or raises DeliveryFailed with it.

Both block (http.client, smtplib): the notifier runs them in threads of its own, each network
step bounded by HUB_NOTIFY_TIMEOUT, and all after connecting (a webhook's request and answer,
an email's message and QUIT) by TRY_TIMEOUTS of them.

Webhooks: a JSON POST signed with the destination's secret; redirects are not followed (a 3xx
is a failure). Unless HUB_WEBHOOK_ALLOW_PRIVATE, a receiver must be on a public address: a URL
naming a private or loopback address is refused when the destination is made
(check_webhook_url), and at each delivery the host name is resolved, every address it resolves
to must be public, and the connection goes to the address checked (not to a second lookup that
DNS rebinding could answer otherwise).
"""
import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import socket
import threading
import urllib.parse

import orjson
from django.core.mail import EmailMessage, get_connection

SIGNATURE_HEADER = "X-Telehub-Signature"
# A webhook try's deadline after it connects, in HUB_NOTIFY_TIMEOUTs.
TRY_TIMEOUTS = 3


class DeliveryFailed(Exception):
    """The receiver refused or could not be reached; str() is its answer or the error."""


def sign(secret, body):
    """The X-Telehub-Signature value of `body` (bytes) under `secret`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_webhook_url(url, allow_private):
    """Raises ValueError saying what is wrong with `url` as a webhook address."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry a login: the receiver checks the signature instead")
    try:
        parts.port
    except ValueError:
        raise ValueError("has a bad port") from None
    if allow_private:
        return
    host = parts.hostname.lower()
    if host == "localhost" or host.endswith(".localhost"):
        raise ValueError("names this machine (HUB_WEBHOOK_ALLOW_PRIVATE is off)")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return  # a host name: checked when resolved, at each delivery
    if not _is_public(address):
        raise ValueError(f"{address} is not a public address (HUB_WEBHOOK_ALLOW_PRIVATE is off)")


def _is_public(address):
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def public_address(host, port):
    """One address of `host`, all of whose addresses are public; else DeliveryFailed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise DeliveryFailed(f"cannot resolve {host}: {error}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:
        if not _is_public(address):
            raise DeliveryFailed(f"{host} resolves to {address}, not a public address (HUB_WEBHOOK_ALLOW_PRIVATE is off)")
    return str(addresses[0])


class Webhook:
    def __init__(self, destination, timeout, allow_private):
        self.url = destination.url
        self.secret = destination.secret
        self.timeout = timeout
        self.allow_private = allow_private

    def send(self, body):
        payload = orjson.dumps(body)
        parts = urllib.parse.urlsplit(self.url)
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        connection_class = http.client.HTTPSConnection if https else http.client.HTTPConnection
        connection = connection_class(parts.hostname, port, timeout=self.timeout)
        if not self.allow_private:
            address = public_address(parts.hostname, port)
            # http.client connects through this attribute; the Host header and TLS's server
            # name stay the URL's host.
            connection._create_connection = lambda _, *args: socket.create_connection((address, port), *args)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Telehub",
            SIGNATURE_HEADER: sign(self.secret, payload),
        }
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # Each step has its timeout; a receiver that answers a byte at a time is cut off at
        # the deadline, so one try takes at most connect + TRY_TIMEOUTS timeouts.
        deadline = TRY_TIMEOUTS * self.timeout
        cutoff = None
        cut = threading.Event()  # set before the socket is shut, so a read it ends sees it

        def cut_off():
            cut.set()
            connection.sock.shutdown(socket.SHUT_RDWR)

        try:
            connection.connect()
            cutoff = threading.Timer(deadline, cut_off)
            cutoff.start()
            connection.request("POST", path, payload, headers)
            response = connection.getresponse()
            response.read(1024)
        except (OSError, http.client.HTTPException) as error:
            if cut.is_set():
                raise DeliveryFailed(f"no whole answer within {deadline} s") from None
            raise DeliveryFailed(f"{type(error).__name__}: {error}") from None
        else:
            if cut.is_set():  # http.client takes a status line cut short for a whole one
                raise DeliveryFailed(f"no whole answer within {deadline} s")
        finally:
            if cutoff is not None:
                cutoff.cancel()
            connection.close()
        answer = f"{response.status} {response.reason}".strip()
        if 300 <= response.status < 400:
            raise DeliveryFailed(f"{answer} (redirects are not followed)")
        if not 200 <= response.status < 300:
            raise DeliveryFailed(answer)
        return answer


class Email:
    """Through Django's email backend (the SMTP server is a HUB_EMAIL_* setting), each network
    step bounded by the notifier's timeout; and, with the SMTP backend, what follows the
    connection's opening (the message and QUIT) by TRY_TIMEOUTS of them, as a webhook's answer."""

    def __init__(self, destination, timeout, allow_private):
        self.to = list(destination.to)
        self.timeout = timeout

    def send(self, body):
        subject, text = email_text(body)
        connection = get_connection(timeout=self.timeout)
        deadline = TRY_TIMEOUTS * self.timeout
        cutoff = None
        cut = threading.Event()  # set before the socket is shut, so a step it ends sees it

        def cut_off():
            cut.set()
            smtp = connection.connection
            if smtp is not None and smtp.sock is not None:
                with contextlib.suppress(OSError):
                    smtp.sock.shutdown(socket.SHUT_RDWR)

        try:
            connection.open()
            if getattr(connection, "connection", None) is not None:  # an SMTP connection, open
                cutoff = threading.Timer(deadline, cut_off)
                cutoff.start()
            EmailMessage(subject, text, to=self.to, connection=connection).send()
        except OSError as error:  # smtplib's errors are OSErrors too
            if cut.is_set():
                raise DeliveryFailed(f"not accepted within {deadline} s") from None
            raise DeliveryFailed(f"{type(error).__name__}: {error}") from None
        finally:
            with contextlib.suppress(OSError):  # QUIT, within the deadline too
                connection.close()
            if cutoff is not None:
                cutoff.cancel()
        return f"accepted for {len(self.to)} address{'es' if len(self.to) > 1 else ''}"


TRANSPORTS = {"webhook": Webhook, "email": Email}


def transport_for(destination, timeout, allow_private):
    return TRANSPORTS[destination.kind](destination, timeout, allow_private)


def email_text(body):
    """An email's subject and plain text for a notification body (docs/protocol.md)."""
    if body["event"] == "digest":
        events = body["events"]
        lines = [_one_line(event) for event in events]
        return f"[Telehub] {len(events)} alarm notifications", "\n".join(lines) + "\n"
    alarm = body["alarm"]
    subject = f"[Telehub] {alarm['severity']} alarm {body['event']}: {alarm['rule']['name']} on {alarm['device']}"
    return subject, _one_line(body) + "\n"


def _one_line(event):
    alarm = event["alarm"]
    acknowledged = f", acknowledged by {alarm['acknowledged_by']}" if alarm["acknowledged"] else ""
    return (
        f"{event['event']}: {alarm['severity']} {alarm['rule']['name']!r} on {alarm['device']} "
        f"(alarm {alarm['id']}, {alarm['state']}{acknowledged}, last value {alarm['last_value']!r}, count {alarm['count']})"
    )
