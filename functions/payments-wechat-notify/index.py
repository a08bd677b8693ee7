from app.api.payment_notify import wechat_notify
from app.http import http_handler

main_handler = http_handler(wechat_notify)
