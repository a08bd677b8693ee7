from app.api.tasks import list_tasks
from app.http import http_handler

main_handler = http_handler(list_tasks)
