from app.events.queue import queue_handler
from app.pipeline.engine import handle

main_handler = queue_handler(handle)
