"""The original endpoint, for comparison: Flask's threaded server, JSON over HTTP.

    GET /gbm?periods=100&startPrice=70&mu=0.05&sigma=0.3&delta=1 -> {"result": [...]}

Same maths as the service (t = delta / 252, the start price first), written the
way the original 15-line endpoint was.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
from flask import Flask, jsonify, request
from werkzeug.serving import WSGIRequestHandler, make_server

app = Flask(__name__)


@app.get("/gbm")
def gbm():
    periods = int(request.args["periods"])
    start = float(request.args["startPrice"])
    mu = float(request.args["mu"])
    sigma = float(request.args["sigma"])
    t = float(request.args["delta"]) / 252
    shocks = np.random.standard_normal(periods - 1)
    steps = (mu - sigma**2 / 2) * t + sigma * np.sqrt(t) * shocks
    prices = start * np.exp(np.concatenate([[0.0], np.cumsum(steps)]))
    return jsonify({"result": prices.tolist()})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    # What app.run(threaded=True) starts, made here so the bound port is known,
    # with HTTP/1.1 keep-alive: the baseline at its fastest, and no thousands of
    # closed connections waiting out TIME_WAIT.
    WSGIRequestHandler.protocol_version = "HTTP/1.1"
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    print(f"listening on 127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
