from app.api.admin_secrets import put_secret
from app.http import http_handler

main_handler = http_handler(put_secret)
