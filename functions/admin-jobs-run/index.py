from app.api.admin_jobs import run_admin_job
from app.http import http_handler

main_handler = http_handler(run_admin_job)
