"""The API Mall surface (base path /api/v1): routers, wire schemas and presenters."""
