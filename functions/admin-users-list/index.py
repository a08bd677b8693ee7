from app.api.admin_users import list_users
from app.http import http_handler

main_handler = http_handler(list_users)
