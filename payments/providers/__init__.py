"""Payment provider plug-ins, loaded by dotted path from ``PAYMENT_PROVIDERS``
(the ``EMAIL_BACKEND`` pattern) and bound to a payment method's configuration
(``payments.methods``, which also finds a method's plug-in): adding one touches no other app."""
