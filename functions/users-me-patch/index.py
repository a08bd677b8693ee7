from app.api.users import patch_me
from app.http import http_handler

main_handler = http_handler(patch_me)
