"""The events' documentation (contract §14): the AsyncAPI 3.0 document, built from the
pipelines and the models (`document`, `objects`), and the page that renders it (`page`)."""

from app.asyncapi.document import build_asyncapi
from app.asyncapi.page import replace_asyncapi, setup_asyncapi

__all__ = ["build_asyncapi", "replace_asyncapi", "setup_asyncapi"]
