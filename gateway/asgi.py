from django.core.asgi import get_asgi_application

from gateway.startup import load_settings

load_settings()
application = get_asgi_application()
