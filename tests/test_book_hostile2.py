"""Hostile review of the books and trades of a path (issue 13): problems found, one test each."""

from __future__ import annotations

import csv
import datetime as dt
import io

import grpc
import httpx
from google.protobuf import json_format

from client import path_request
from marketdata.v1 import market_data_pb2 as pb
from marketdata.v1 import market_data_pb2_grpc
from tests.conftest import ServerThread

START = dt.datetime(2026, 3, 2, 14, 30, tzinfo=dt.UTC)


def test_a_csv_stream_of_a_path_with_a_book_carries_the_sizes_or_refuses_the_book():
    # What is wrong: StreamPrices over HTTP as CSV (server/web/formats.py CsvWriter) writes
    # index, time, price, bid, ask and nothing else, so a request with book.top_of_book gets a
    # 200 and a CSV without bid_size/ask_size (and without its trades), with no word that they
    # were dropped. Why it matters: the caller asked for the sizes, the server spent the work
    # on them, and a downloaded file silently lacks them; the rule is that a stream carries
    # what was asked or the request is refused naming the field (here `book`).
    request = path_request(
        "gbm",
        200,
        1 / 23_400,
        model_params={"start_price": 70.0, "mu": 0.0, "sigma": 0.3},
        seed=4,
        symbol="CSV",
        tick_size=0.01,
        spread_bps=2.0,
        start_time=START,
        chunk_size=50,
        book=pb.PathBook(top_of_book=True),
    )
    srv = ServerThread(http_port=0)
    try:
        with grpc.insecure_channel(srv.target) as channel:
            whole = market_data_pb2_grpc.MarketDataServiceStub(channel).GetPrices(request)
        with httpx.Client(base_url=f"http://127.0.0.1:{srv.running.http_port}", timeout=30) as http:
            reply = http.post(
                "/marketdata.v1.MarketDataService/StreamPrices?format=csv",
                json=json_format.MessageToDict(request),
            )
    finally:
        srv.stop()
    assert len(whole.bid_size) == 200 and min(whole.bid_size) > 0  # the sizes exist
    if reply.status_code != 200:  # refusing the book is an acceptable answer
        assert "book" in reply.text
        return
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert len(rows) == 200
    assert "bid_size" in rows[0] and "ask_size" in rows[0], f"columns: {list(rows[0])}"
    assert [int(r["bid_size"]) for r in rows] == list(whole.bid_size)
    assert [int(r["ask_size"]) for r in rows] == list(whole.ask_size)
