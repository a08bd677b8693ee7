from app.events.queue import queue_handler
from app.runner.worker import handle

main_handler = queue_handler(handle)
