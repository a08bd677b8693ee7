from app.events.timer import timer_handler
from app.payments.reconcile import run_timer

main_handler = timer_handler(run_timer, "order-reconcile")
