from app.api.admin_secrets import list_secrets
from app.http import http_handler

main_handler = http_handler(list_secrets)
