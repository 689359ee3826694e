"""An e-mail backend whose first send fails, as an e-mail provider's outage would."""

from django.core.mail.backends.locmem import EmailBackend


class FailOnceBackend(EmailBackend):
    failed = False  # class-wide: Django makes a new backend for every message; tests reset it

    def send_messages(self, messages):
        if not FailOnceBackend.failed:
            FailOnceBackend.failed = True
            raise ConnectionError("provider unavailable")
        return super().send_messages(messages)
