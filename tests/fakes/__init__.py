"""Payment gateways faked on loopback: each signs like the real one, with keys
the test makes, and can pay an order (send its signed notify to the shop),
answer queries and refunds, or be down."""
