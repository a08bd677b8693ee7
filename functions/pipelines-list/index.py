from app.api.pipelines import list_pipelines
from app.http import http_handler

main_handler = http_handler(list_pipelines)
