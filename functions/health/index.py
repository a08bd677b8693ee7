from app.api.health import get_health
from app.http import http_handler

main_handler = http_handler(get_health)
