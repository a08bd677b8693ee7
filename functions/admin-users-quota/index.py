from app.api.admin_quota import adjust_quota
from app.http import http_handler

main_handler = http_handler(adjust_quota)
