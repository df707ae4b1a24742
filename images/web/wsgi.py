"""The demo stack's web app (stands in for lsapan/docker-swarm-demo-web).

Each GET / bumps a counter kept in Redis and shows which container served
the request, the count, and the `db_password` secret, so a person watching
the page sees load balancing, shared state and secret delivery at once.

Run with: gunicorn --bind 0.0.0.0:5000 wsgi:app
"""

import html
import os
import socket

import redis
from flask import Flask, Response

REDIS_HOST = os.environ.get("REDIS_HOST", "redis")
REDIS_PORT = int(os.environ.get("REDIS_PORT", "6379"))
SECRET_PATH = os.environ.get("SECRET_PATH", "/run/secrets/db_password")
COUNTER_KEY = "num_requests"

app = Flask(__name__)

# Created once, connects lazily: the app must start even when Redis is not
# up yet (services start in any order), and fail per request instead.
store = redis.Redis(
    host=REDIS_HOST,
    port=REDIS_PORT,
    socket_connect_timeout=2,
    socket_timeout=2,
)

PAGE = """<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>Docker Swarm demo</title>
<style>
  body {{ font-family: sans-serif; background: #f0f4f8; color: #243b53; }}
  main {{ max-width: 36em; margin: 4em auto; background: #fff; padding: 2em 3em;
          border-radius: 8px; box-shadow: 0 2px 8px rgba(0,0,0,.1); }}
  h1 {{ color: #0b69a3; }}
  dt {{ font-weight: bold; margin-top: 1em; }}
  dd {{ font-family: monospace; font-size: 1.3em; margin-left: 0; }}
</style>
</head>
<body>
<main>
<h1>Hello from the swarm!</h1>
<dl>
  <dt>Served by container</dt><dd id="hostname">{hostname}</dd>
  <dt>Requests so far</dt><dd id="requests">{requests}</dd>
  <dt>Database password (secret)</dt><dd id="secret">{secret}</dd>
</dl>
</main>
</body>
</html>
"""


def read_secret():
    try:
        with open(SECRET_PATH, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return "(no secret)"


@app.route("/")
def index():
    hostname = socket.gethostname()
    try:
        requests = store.incr(COUNTER_KEY)
    except redis.RedisError as e:
        body = (
            "500 Internal Server Error\n\n"
            f"Could not update the request counter in Redis at "
            f"{REDIS_HOST}:{REDIS_PORT}: {e}\n"
            f"(served by {hostname})\n"
        )
        return Response(body, status=500, mimetype="text/plain")
    page = PAGE.format(
        hostname=html.escape(hostname),
        requests=requests,
        secret=html.escape(read_secret()),
    )
    return Response(page, mimetype="text/html")


@app.route("/healthz")
def healthz():
    """Liveness without Redis, for healthchecks."""
    return Response("ok\n", mimetype="text/plain")


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
