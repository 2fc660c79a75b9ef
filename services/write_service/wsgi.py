import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from cqrs_common.web.chunked import ChunkedBodyBuffer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "write_service.settings")
# Chunked request bodies are buffered (up to the limit) so Django sees them and the 413 check applies.
application = ChunkedBodyBuffer(get_wsgi_application(), settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
