from app.api.metrics import get_metrics
from app.http import http_handler

main_handler = http_handler(get_metrics)
