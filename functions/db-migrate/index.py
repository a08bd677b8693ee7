from app.db import migrate

main_handler = migrate.main_handler
