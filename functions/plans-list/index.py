from app.api.plans import list_plans
from app.http import http_handler

main_handler = http_handler(list_plans)
