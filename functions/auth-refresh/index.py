from app.api.auth import refresh
from app.http import http_handler

main_handler = http_handler(refresh)
