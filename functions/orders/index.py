from app.api.orders import create_order
from app.http import http_handler

main_handler = http_handler(create_order)
