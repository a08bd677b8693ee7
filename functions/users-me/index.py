from app.api.users import get_me, patch_me
from app.http import http_handler

main_handler = http_handler(get_me, patch_me)
