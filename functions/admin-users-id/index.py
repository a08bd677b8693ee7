from app.api.admin_quota import adjust_quota
from app.api.admin_users import patch_user
from app.http import http_handler

main_handler = http_handler(patch_user, adjust_quota)
