from app.api.auth import wechat_login
from app.http import http_handler

main_handler = http_handler(wechat_login)
