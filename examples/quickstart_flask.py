"""The README's Flask quick start, run by tests/test_quickstarts.py:

    FLASK_SESSION_REDIS=memory:// flask --app examples/quickstart_flask.py run
"""

from flask import Flask, request

from redis_session.flask_session import setup_session

app = Flask(__name__)
app.config.from_mapping(SECRET_KEY="a long random secret",
                        SESSION_REDIS="redis://localhost:6379")
app.config.from_prefixed_env()  # FLASK_SESSION_REDIS=... overrides it
setup_session(app)


@app.route("/")
def counter() -> str:
    count = request.session.count.int
    request.session.count = count + 1
    visits = request.session.incr("visits")
    return f"count {count + 1}, visits {visits}\n"
