from app.api.plans import put_plan
from app.http import http_handler

main_handler = http_handler(put_plan)
