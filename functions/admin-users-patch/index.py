from app.api.admin_users import patch_user
from app.http import http_handler

main_handler = http_handler(patch_user)
