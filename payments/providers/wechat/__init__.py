"""微信支付 WeChat Pay API v3, Native (QR): ``/v3/pay/transactions/native``
opens the trade and returns the ``weixin://`` code the shop's pay page shows;
the notify (``/payments/<id>/notify``) is signed by WeChat and carries the
trade encrypted under the merchant's APIv3 key; ``/v3/pay/transactions/
out-trade-no/…`` is the query (reconciliation, the payment doctor);
``/v3/refund/domestic/refunds`` refunds. No SDK: ``cryptography`` only.

Every request is signed with the merchant's private key (its certificate's
serial goes along as ``serial_no``)::

    Authorization: WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",signature="…",timestamp="…",serial_no="…"
    signature = base64(RSA-PKCS1v15-SHA256("METHOD\\n/path?query\\ntimestamp\\nnonce\\nbody\\n"))

Every answer used, and every notify, is verified against WeChat's platform
public key (or platform certificate)::

    Wechatpay-Signature = base64(RSA-PKCS1v15-SHA256("timestamp\\nnonce\\nbody\\n"))

with ``Wechatpay-Timestamp`` within five minutes and, when the method names
one, ``Wechatpay-Serial`` equal to its platform key id. The notify's
``resource`` is AEAD_AES_256_GCM under the APIv3 key (the 32 characters as
bytes), the ``nonce`` and ``associated_data`` as given.

Notify events: ``TRANSACTION.SUCCESS`` → the order is paid;
``REFUND.SUCCESS`` → the payment was refunded at WeChat. Others are
acknowledged and not recorded.
"""

from payments.providers.wechat.payloads import wechat_amount, wechat_fen
from payments.providers.wechat.provider import WechatPayProvider
from payments.providers.wechat.signing import (
    wechat_answer_message,
    wechat_authorization,
    wechat_decrypt,
    wechat_request_message,
    wechat_sign,
    wechat_signature_valid,
)

__all__ = [
    "WechatPayProvider", "wechat_amount", "wechat_answer_message", "wechat_authorization", "wechat_decrypt",
    "wechat_fen", "wechat_request_message", "wechat_sign", "wechat_signature_valid",
]
