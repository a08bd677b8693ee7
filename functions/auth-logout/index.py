from app.api.auth import logout
from app.http import http_handler

main_handler = http_handler(logout)
