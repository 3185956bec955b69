from django import forms


class CheckoutForm(forms.Form):
    email = forms.EmailField(
        max_length=254, help_text="Your key is sent here.",
        widget=forms.EmailInput(attrs={"autocomplete": "email", "inputmode": "email"}),
    )
    phone = forms.CharField(
        max_length=32, required=False, help_text="Optional.",
        widget=forms.TextInput(attrs={"autocomplete": "tel", "inputmode": "tel"}),
    )

    def __init__(self, *args, max_quantity: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["quantity"] = forms.IntegerField(
            min_value=1, max_value=max_quantity, initial=1,
            widget=forms.NumberInput(attrs={"inputmode": "numeric"}),
        )
        self.order_fields(["quantity", "email", "phone"])
