"""The ASGI worker (worker_class asgi): the channel protocol (channel), the HTTP and
WebSocket exchanges (http, websocket, exchange), lifespan, and the worker class (worker),
after Uvicorn's protocols/, lifespan/ and loops/."""
