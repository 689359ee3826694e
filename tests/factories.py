"""Factories for the rows tests arrange (factory-boy)."""

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group


class StaffFactory(factory.django.DjangoModelFactory):
    """A staff member; `roles` puts them in those groups: StaffFactory(username="ann", roles=["support"])."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"staff{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@claimdesk.example")
    is_staff = True
    password = factory.django.Password("correct horse battery staple")

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        for name in extracted or []:
            self.groups.add(Group.objects.get(name=name))
