from app.api.auth import register
from app.http import http_handler

main_handler = http_handler(register)
