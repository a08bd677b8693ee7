from app.api.tasks import create_task, list_tasks
from app.http import http_handler

main_handler = http_handler(list_tasks, create_task)
