from app.api.tasks import get_task
from app.http import http_handler

main_handler = http_handler(get_task)
