"""The Flask counter from redis-session's README, runnable without Redis:

    python examples/flask_counter.py --redis memory://

(``--redis redis://localhost:6379`` for a real server).
"""

import argparse
import os

from flask import Flask, request

from redis_session.flask_session import setup_session

app = Flask(__name__)


@app.route("/")
def handle() -> str:
    count = request.session.count.int
    res = f"Current session value of count:{count}\n"
    request.session.count = count + 1
    res += f"Current session value:{request.session.count.int}\n"
    return res


def configure(redis_url: str, prefix: str = "appName") -> Flask:
    app.config.from_mapping(
        SECRET_KEY=os.environ.get("SECRET_KEY", "demo"),
        SESSION_REDIS=redis_url,
        SESSION_REDIS_PREFIX=prefix,
        SESSION_COOKIE_ID="app-session-id",
        SESSION_COOKIE_HTTP_ONLY=True,
        SESSION_COOKIE_SECURE=False,  # plain-HTTP demo; True in production
        SESSION_COOKIE_PATH="/",
        SESSION_EXPIRE=60 * 60 * 24 * 7,
    )
    setup_session(app)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", default="redis://localhost:6379", help="session store URL")
    parser.add_argument("--prefix", default="appName", help="Redis key prefix")
    parser.add_argument("--port", type=int, default=3000)
    arguments = parser.parse_args()
    configure(arguments.redis, arguments.prefix).run(host="127.0.0.1", port=arguments.port, threaded=True)


if __name__ == "__main__":
    main()
