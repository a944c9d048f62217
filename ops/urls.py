from django.urls import path

from ops import views

urlpatterns = [
    path("health", views.health, name="health"),
    path("health/deps", views.health_deps, name="health-deps"),
    path("metrics", views.metrics, name="metrics"),
]
