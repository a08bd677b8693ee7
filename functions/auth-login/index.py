from app.api.auth import login
from app.http import http_handler

main_handler = http_handler(login)
