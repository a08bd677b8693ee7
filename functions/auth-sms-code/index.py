from app.api.auth import sms_code
from app.http import http_handler

main_handler = http_handler(sms_code)
