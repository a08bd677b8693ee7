from app.api.docs import get_openapi
from app.http import http_handler

main_handler = http_handler(get_openapi)
