from app.events.timer import timer_handler
from app.runner.sweeper import run_timer

main_handler = timer_handler(run_timer, "saga-sweeper")
