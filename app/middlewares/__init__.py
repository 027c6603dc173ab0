"""The app-wide middlewares, outermost first: request id, access log and metrics, headers, errors."""
