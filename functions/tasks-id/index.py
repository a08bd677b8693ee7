from app.api.tasks import cancel_task, get_task
from app.http import http_handler

main_handler = http_handler(get_task, cancel_task)
