"""The two roles as groups: `admin` (manages people and access in the admin) and
`member` (may use every model until an admin narrows it). Existing accounts become
members, superusers also admins, so an upgrade changes nobody's access."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

# What an admin may do in the admin site: people, roles, invites, model access,
# lockouts; the chat record is read-only there anyway.
ADMIN_PERMISSIONS = {
    "auth": ["user", "group"],
    "accounts": ["profile", "groupmodelaccess", "invite"],
    "axes": ["accessattempt", "accessfailurelog", "accesslog"],
    "conversations": ["conversation", "message", "usageevent"],
}


def create_roles(apps, schema_editor):
    # Permissions are normally made after all migrations; the groups need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    User = apps.get_model("auth", "User")
    GroupModelAccess = apps.get_model("accounts", "GroupModelAccess")

    admin, _ = Group.objects.get_or_create(name="admin")
    member, _ = Group.objects.get_or_create(name="member")
    for app_label, models in ADMIN_PERMISSIONS.items():
        admin.permissions.add(
            *Permission.objects.filter(content_type__app_label=app_label, content_type__model__in=models)
        )
    GroupModelAccess.objects.get_or_create(group=member, model="*")
    for user in User.objects.all():
        user.groups.add(member)
        if user.is_superuser or user.is_staff:
            user.groups.add(admin)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_roles_and_invites"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("axes", "0010_accessattemptexpiration"),
        ("conversations", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
