"""The OpenAI-style surface (base path /v1): `/v1/videos` over the same tasks, keys and
credits as the API Mall surface. Routers, wire schemas and presenters, as in api/apimall/."""
