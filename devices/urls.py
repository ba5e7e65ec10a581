"""The routes a clustered broker calls (devices.broker_http); the devices API is in devices.api."""
from django.urls import path

from devices import broker_http

urlpatterns = [
    path("authn", broker_http.authn, name="broker-authn"),
    path("authz", broker_http.authz, name="broker-authz"),
]
