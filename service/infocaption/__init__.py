"""InfoCaption: the API client (CONTRACT section 4), the local simulator and their commands."""
