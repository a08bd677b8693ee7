from app.api.docs import get_docs, get_docs_asset
from app.http import http_handler

main_handler = http_handler(get_docs, get_docs_asset)
