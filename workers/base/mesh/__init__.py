"""An asyncio MESH API client (v2, NHSMESH HMAC authentication)."""
