from app.api.tasks import cancel_task
from app.http import http_handler

main_handler = http_handler(cancel_task)
