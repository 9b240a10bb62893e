"""Generated from proto/ by clients/python/generate: do not edit."""
