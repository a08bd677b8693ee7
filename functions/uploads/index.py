from app.api.uploads import create_upload
from app.http import http_handler

main_handler = http_handler(create_upload)
