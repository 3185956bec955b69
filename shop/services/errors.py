"""What a checkout refuses, with a code the buyer's page and the API show."""


class CheckoutError(Exception):
    def __init__(self, *, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
