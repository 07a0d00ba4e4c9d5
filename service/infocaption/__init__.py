"""InfoCaption: the API client (docs/infocaption-api.md), the local simulator and their commands."""
