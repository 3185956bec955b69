"""支付宝开放平台 (Alipay open platform), RSA2 both ways, without the SDK:
当面付 (``f2f``: ``alipay.trade.precreate`` → a QR code on the shop's own pay
page), 电脑网站支付 (``page``: ``alipay.trade.page.pay``) and 手机网站支付
(``wap``: ``alipay.trade.wap.pay``) as an auto-submitted form; the notify;
``alipay.trade.query`` (reconciliation, query before credit, the doctor's
probe) and ``alipay.trade.refund``.

Requests are signed with the app's private key (``ALIPAY_PRIVATE_KEY``);
answers and notifies are verified with Alipay's public key
(``ALIPAY_PUBLIC_KEY``, not the app public key uploaded to the console).
Sign = base64 of SHA256withRSA (PKCS#1 v1.5) over the parameters sorted by
name, joined as ``k=v&k=v`` with raw (not URL-encoded) values:

- a request: every parameter but ``sign`` whose value is not empty;
- a notify: every parameter but ``sign`` and ``sign_type``;
- an answer: the exact raw JSON text of its ``<method>_response`` object
  (never re-serialised: a key order or escape changed breaks the sign).
"""

from payments.providers.alipay.answers import AlipayAnswer, alipay_response_raw
from payments.providers.alipay.provider import AlipayProvider
from payments.providers.alipay.signing import (
    AlipayKeyInvalid,
    alipay_sign,
    alipay_sign_content,
    alipay_sign_valid,
    alipay_timestamp,
)

__all__ = [
    "AlipayAnswer", "AlipayKeyInvalid", "AlipayProvider", "alipay_response_raw", "alipay_sign", "alipay_sign_content",
    "alipay_sign_valid", "alipay_timestamp",
]
