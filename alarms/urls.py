from django.urls import path

from alarms import views

urlpatterns = [
    path("alarms/", views.alarms, name="alarms"),
]
