from app.events.timer import timer_handler
from app.identity.invites import refill_job

main_handler = timer_handler(refill_job, name="invite-refill")
