from django import forms
from django.utils.translation import gettext_lazy as _

from .models import ClaimKind
from .money import plain_decimal
from .services import MAX_ATTACHMENTS, REFERENCE_FIELDS

# Which reference fields the form shows for each kind (all of them without JavaScript).
FIELDS_BY_KIND = {
    "liquidation": ["trade_id", "order_id", "market_symbol", "approximate_time", "claimed_amount", "claimed_asset"],
    "bad_fill": ["trade_id", "order_id", "market_symbol", "approximate_time", "claimed_amount", "claimed_asset"],
    "wrong_withdrawal": ["withdrawal_id", "transaction_hash", "approximate_time", "claimed_amount", "claimed_asset"],
    "position_error": ["market_symbol", "approximate_time", "claimed_amount", "claimed_asset"],
    "missing_funds": ["claimed_asset", "claimed_amount", "approximate_time"],
    "other": ["approximate_time", "claimed_amount", "claimed_asset"],
}


class PlainDecimalField(forms.DecimalField):
    """An amount typed with the digits 0-9 and at most one point: not `1_000`, other scripts' digits
    or `-0`, which Decimal() alone would take."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        if plain_decimal(str(value).strip()) is None:
            raise forms.ValidationError(
                _("Write the amount with the digits 0-9 and at most one point, e.g. 1250.50."), code="plain"
            )
        return super().to_python(value)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault(
            "widget", MultipleFileInput(attrs={"accept": ".png,.jpg,.jpeg,.pdf,image/png,image/jpeg,application/pdf"})
        )
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        files = data if isinstance(data, list | tuple) else ([data] if data else [])
        if len(files) > MAX_ATTACHMENTS:
            raise forms.ValidationError(_("At most %(count)d files.") % {"count": MAX_ATTACHMENTS})
        return [super(MultipleFileField, self).clean(f, initial) for f in files]


class AccessibleForm(forms.Form):
    """Inputs point at their help text and, once invalid, at their errors (screen readers read both)."""

    def _describe(self, name: str, *ids: str) -> None:
        attrs = self.fields[name].widget.attrs
        attrs["aria-describedby"] = " ".join(filter(None, [attrs.get("aria-describedby"), *ids]))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            if field.help_text:
                self._describe(name, f"id_{name}-help")

    def full_clean(self):
        super().full_clean()
        for name in self.errors:
            if name in self.fields:
                self.fields[name].widget.attrs["aria-invalid"] = "true"
                self._describe(name, f"id_{name}-errors")


class ClaimForm(AccessibleForm):
    user_id = forms.IntegerField(
        label=_("Account ID"), min_value=1, help_text=_("The number shown in your exchange profile.")
    )
    email = forms.EmailField(
        label=_("E-mail address of the account"),
        help_text=_("We send a confirmation link to the address the exchange has on file."),
    )
    kind = forms.ChoiceField(label=_("What happened?"), choices=ClaimKind.choices, widget=forms.RadioSelect)
    trade_id = forms.IntegerField(label=_("Trade ID"), required=False, min_value=1)
    order_id = forms.CharField(label=_("Order ID"), required=False, max_length=64)
    withdrawal_id = forms.IntegerField(label=_("Withdrawal ID"), required=False, min_value=1)
    transaction_hash = forms.CharField(label=_("Transaction hash"), required=False, max_length=200)
    market_symbol = forms.CharField(
        label=_("Market"), required=False, max_length=64, help_text=_("For example SOL_USDC_PERP.")
    )
    approximate_time = forms.DateTimeField(
        label=_("Approximate time (UTC)"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
    )
    claimed_amount = PlainDecimalField(
        label=_("Amount you believe you lost"), required=False, min_value=0, max_digits=38, decimal_places=18
    )
    claimed_asset = forms.CharField(
        label=_("Asset of that amount"), required=False, max_length=32, help_text=_("For example USDC or SOL.")
    )
    description = forms.CharField(
        label=_("Tell us what happened, in your own words"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 5}),
        max_length=10000,
    )
    attachments = MultipleFileField(
        label=_("Screenshots or statements (PNG, JPEG or PDF; up to 5 files, 10 MB each)"), required=False
    )

    def references(self) -> dict:
        """What the claimant typed; the service stores it as every channel does (references_normalise)."""
        return {name: self.cleaned_data.get(name) for name in REFERENCE_FIELDS}

    def reference_fields(self):
        """The reference fields, each with the kinds it belongs to (for the form's show/hide)."""
        for name in REFERENCE_FIELDS:
            kinds = " ".join(k for k, names in FIELDS_BY_KIND.items() if name in names)
            yield self[name], kinds


class AddInformationForm(AccessibleForm):
    text = forms.CharField(
        label=_("Anything to add?"), required=False, widget=forms.Textarea(attrs={"rows": 4}), max_length=10000
    )
    attachments = MultipleFileField(label=_("Attachments (PNG, JPEG or PDF)"), required=False)
