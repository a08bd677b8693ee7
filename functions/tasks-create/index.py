from app.api.tasks import create_task
from app.http import http_handler

main_handler = http_handler(create_task)
