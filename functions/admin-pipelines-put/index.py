from app.api.pipelines import put_pipeline
from app.http import http_handler

main_handler = http_handler(put_pipeline)
