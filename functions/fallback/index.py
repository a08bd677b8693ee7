from app.http import http_handler

# The custom domain maps every path no other function claims here: the API's 404.
main_handler = http_handler()
