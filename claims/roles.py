"""Staff roles (payouts.md, "Who may do what"): the Django groups `support`, `approver` and
`finance`, with exactly the permissions the spec gives, and who holds which.

The services check roles, not Django permissions: a superuser has every permission, but holds
no role (administering the site is not approving or paying). The groups' permissions let the
admin show each person what they may see and do.
"""

from dataclasses import dataclass

from django.apps import apps as global_apps
from django.core.exceptions import ValidationError

SUPPORT, APPROVER, FINANCE = "support", "approver", "finance"
ROLES = (SUPPORT, APPROVER, FINANCE)
APPROVING_ROLES = frozenset({SUPPORT, APPROVER})

# Read everything: every model of both apps, except API clients (site administration).
NOT_READ = {("claims", "apiclient")}
REVIEW = [
    "claims.review_claim",
    "claims.reject_claim",
    "claims.approve_item",
    "claims.reject_item",
    "claims.set_item_amount",
    "claims.send_back_item",
    "claims.parse_again_inboundmessage",
]
ROLE_PERMISSIONS = {
    SUPPORT: REVIEW,
    APPROVER: [*REVIEW, "claims.confirm_limits"],
    FINANCE: [
        "claims.add_payoutbatch",
        "claims.confirm_payoutline",
        "claims.release_payoutline",
        "claims.run_reconciliation",
    ],
}


class RoleConflict(ValidationError):
    pass


def roles_sync(apps=global_apps, **kwargs) -> None:
    """Create the three groups and give each exactly its permissions (idempotent). Run by a data
    migration and after every migrate (a test database's flush empties the groups)."""
    from django.contrib.auth.management import create_permissions

    for app_label in ("claims", "exchange"):
        config = apps.get_app_config(app_label)
        config.models_module = getattr(config, "models_module", None) or True  # historical configs have none
        create_permissions(config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    readable = [
        p
        for p in Permission.objects.filter(
            content_type__app_label__in=["claims", "exchange"], codename__startswith="view_"
        ).select_related("content_type")
        if (p.content_type.app_label, p.content_type.model) not in NOT_READ
    ]
    for role, names in ROLE_PERMISSIONS.items():
        # filter, not get: a migration before a model's own runs this without that model's permissions
        # (they are granted by the run after every migrate).
        granted = [
            p
            for name in names
            for p in Permission.objects.filter(content_type__app_label=name.split(".")[0], codename=name.split(".")[1])
        ]
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set([*readable, *granted])


def roles_of(user) -> frozenset[str]:
    """The roles a person holds now: none when inactive or a superuser."""
    if user is None or not getattr(user, "is_active", False) or user.is_superuser or not user.is_staff:
        return frozenset()
    cached = getattr(user, "_claimdesk_roles", None)
    if cached is None:
        cached = frozenset(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        user._claimdesk_roles = cached
    return cached


def roles_check(names) -> None:
    """`finance` excludes `support` and `approver`: the one who approves never also pays."""
    names = set(names)
    if FINANCE in names and names & APPROVING_ROLES:
        raise RoleConflict(
            "finance excludes support and approver: a person is never in both "
            f"(asked for {', '.join(sorted(names & set(ROLES)))})"
        )


def roles_guard(*, instance, action: str, pk_set, model, reverse: bool, **kwargs) -> None:
    """m2m_changed on User.groups: refuse a change that would put one person in finance and in
    support or approver."""
    if action != "pre_add" or not pk_set:
        return
    from django.contrib.auth.models import Group

    if reverse:  # group.user_set.add(users): each user gets this one group
        group_names = {instance.name}
        for user in model.objects.filter(pk__in=pk_set):
            roles_check(group_names | set(user.groups.values_list("name", flat=True)))
        return
    added = set(Group.objects.filter(pk__in=pk_set).values_list("name", flat=True))
    roles_check(added | set(instance.groups.values_list("name", flat=True)))


class Refused(Exception):
    """An action the rules do not allow; the message says which rule refused it."""

    def __init__(self, message: str, *, rule: str):
        super().__init__(message)
        self.rule = rule


class RoleRefused(Refused):
    pass


@dataclass(frozen=True)
class Actor:
    """Who acts: a person (with the name the audit trail records: their username, or
    `command-line alice` for a command run with `--by alice`), or the system (`policy`,
    `detection`, `matching`, `claimant 100056`) with no person behind it."""

    name: str
    user: object | None = None

    @classmethod
    def person(cls, user) -> "Actor":
        return cls(user.get_username(), user)

    @classmethod
    def command_line(cls, user) -> "Actor":
        return cls(f"command-line {user.get_username()}", user)

    @property
    def username(self) -> str:
        return self.user.get_username() if self.user is not None else self.name

    @property
    def roles(self) -> frozenset[str]:
        return roles_of(self.user)

    def require(self, roles: frozenset[str] | set[str], action: str) -> None:
        """Refuse unless this person holds one of `roles`."""
        if not self.roles & set(roles):
            held = ", ".join(sorted(self.roles)) or "no role"
            raise RoleRefused(
                f"{self.username} may not {action}: only {' or '.join(sorted(roles))} may "
                f"({self.username} holds {held})",
                rule="role",
            )


POLICY = Actor("policy")
DETECTION = Actor("detection")
MATCHING = Actor("matching")


def role_assign(*, user, role: str, remove: bool = False) -> frozenset[str]:
    """Put a person in a role (making them staff) or take them out; refused if it would put them in
    finance and in support or approver."""
    from django.contrib.auth.models import Group
    from django.db import transaction

    with transaction.atomic():
        group = Group.objects.get(name=role)
        if remove:
            user.groups.remove(group)
        else:
            roles_check({role, *user.groups.values_list("name", flat=True)})
            user.groups.add(group)
            if not user.is_staff:
                user.is_staff = True
                user.save(update_fields=["is_staff"])
    user.__dict__.pop("_claimdesk_roles", None)
    return frozenset(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
