from app.api.auth import logout_all
from app.http import http_handler

main_handler = http_handler(logout_all)
