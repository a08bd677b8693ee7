from app.events.timer import timer_handler
from app.storage.cleanup import run_timer

main_handler = timer_handler(run_timer, "cos-cleanup")
