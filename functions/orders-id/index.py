from app.api.orders import get_order
from app.http import http_handler

main_handler = http_handler(get_order)
