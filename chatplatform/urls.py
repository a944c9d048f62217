from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("ops.urls")),
    path("admin/", admin.site.urls),
    path("", include("accounts.urls")),
    path("", include("api.urls")),
    path("", include("conversations.urls")),
    path("", include("documents.urls")),
]
