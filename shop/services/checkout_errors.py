"""What a checkout refuses, with an error code and the field to fix: raised
by the checkout and by the answers of a manual product (``manual``)."""


class CheckoutError(Exception):
    def __init__(self, *, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
