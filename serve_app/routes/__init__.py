"""One router per resource of the DM v1 API."""
