"""epusdt (github.com/assimon/epusdt): USDT-TRC20 through the owner's own
epusdt gateway. The shop asks for a trade in yuan, shows the wallet address
and the USDT amount as a QR code on its own pay page, and the gateway's chain
watcher notifies the shop once that exact USDT amount reached the wallet.

The original epusdt's API, as this plug-in speaks it:

- ``POST {gateway}/api/v1/order/create-transaction``, a signed JSON body
  ``order_id`` (our Payment.reference, at most 32 characters), ``amount`` (a
  JSON number, yuan), ``notify_url``, ``redirect_url``. The answer is always
  HTTP 200 with ``{status_code, message, data, request_id}``: status_code 200
  and data ``trade_id, order_id, amount, actual_amount`` (the USDT to send),
  ``token`` (the wallet address), ``expiration_time, payment_url``; 401 for
  a bad signature, 400 for a refused parameter, 10002 when the order_id was
  used before, 10003-10006 when no wallet, amount slot or rate is available.
- ``GET {gateway}/pay/check-status/{trade_id}``: ``data {trade_id, status}``
  (1 waiting, 2 paid, 3 expired), status_code 10008 for an unknown trade.
  Unsigned and unauthenticated, and it does not say the amount: ``query``
  reports the payment's own amount for a paid trade (the gateway opened that
  trade for exactly that amount, checked in ``start``).
- The notify: a JSON POST of ``trade_id, order_id, amount, actual_amount,
  token, block_transaction_id, status, signature``, sent once the trade is
  paid (status 2; the original never notifies expiry) and retried until the
  answer's body is exactly ``ok``.
- No refund API: a refund is USDT sent back by hand.

Signature = lowercase hex MD5 of the parameters except ``signature``, those
that are null and those that are empty, each written ``k=v`` (numbers as Go
prints a float64 at its shortest: 12.3 and 12, never 12.30 or 12.00, since
epusdt parses every JSON number into a float64), the ``k=v`` strings sorted,
joined with ``&``, with the api token (``api_auth_token`` in epusdt's .env)
appended directly.

Rate: the buyer pays the gateway's ``actual_amount``, whatever rate it used
(its chain watcher matches exactly that amount, and it may add 0.01 USDT
steps to tell two trades on one wallet apart). The owner's rate
(``usdt_rate``, shop currency per USDT) is only a guard: when the rate the
gateway implies (amount / actual_amount) is more than 2% worse for the shop
than the owner's, the payment is not started (RATE_OUT_OF_BOUNDS) and the
owner is told in the log; the buyer is never shown that amount. The trade
then left at the gateway expires by itself.
"""

from payments.providers.epusdt.payloads import usdt_text
from payments.providers.epusdt.provider import EpusdtProvider
from payments.providers.epusdt.signing import EpusdtTokenMissing, epusdt_sign, epusdt_sign_valid

__all__ = ["EpusdtProvider", "EpusdtTokenMissing", "epusdt_sign", "epusdt_sign_valid", "usdt_text"]
