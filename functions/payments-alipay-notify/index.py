from app.api.payment_notify import alipay_notify
from app.http import http_handler

main_handler = http_handler(alipay_notify)
