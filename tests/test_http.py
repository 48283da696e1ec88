"""The HTTP port through a real HTTP client: the original /gbm URL, Connect-style JSON
calls, price streams as NDJSON, CSV and Connect streams, and the live market as SSE.

Every answer is held to what the same call gives over gRPC: the HTTP port must be the
same service, not a second one."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import struct
from collections.abc import Iterator

import grpc
import httpx
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2

from marketdata.v1 import market_data_pb2 as pb
from marketdata.v1 import market_data_pb2_grpc
from server.limits import FeedLimits, Limits
from server.observability import ObservabilityOptions
from server.web import formats
from tests.conftest import ServerThread
from tests.test_metrics import grpc_labels, scrape, value

METHOD = "/marketdata.v1.MarketDataService/"
ORIGINAL = {"periods": 100, "startPrice": 70.0, "mu": 0.05, "sigma": 0.30, "delta": 1.0}


@pytest.fixture(scope="module")
def web() -> Iterator[ServerThread]:
    srv = ServerThread(http_port=0)
    yield srv
    srv.stop()


@pytest.fixture
def http(web: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{web.running.http_port}", timeout=30) as client:
        yield client


@pytest.fixture
def grpc_stub(web: ServerThread) -> Iterator[market_data_pb2_grpc.MarketDataServiceStub]:
    with grpc.insecure_channel(web.target) as channel:
        yield market_data_pb2_grpc.MarketDataServiceStub(channel)


# ---- the original URL ----------------------------------------------------------------------------


def test_the_original_projects_own_test_passes(http: httpx.Client) -> None:
    reply = http.get("/gbm", params=ORIGINAL)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert len(reply.json()["result"]) == 100
    assert reply.json()["result"][0] == 70.0  # the start price first, as the original put it


def test_gbm_is_getgbmprices_with_the_same_seed(http: httpx.Client, grpc_stub) -> None:
    body = http.get("/gbm", params={**ORIGINAL, "seed": 2024}).json()
    expected = grpc_stub.GetGbmPrices(
        pb.GbmRequest(periods=100, start_price=70, mu=0.05, sigma=0.3, delta=1, seed=2024)
    )
    assert body == {"result": list(expected.prices), "seed": 2024}
    drawn = http.get("/gbm", params=ORIGINAL).json()
    replayed = http.get("/gbm", params={**ORIGINAL, "seed": drawn["seed"]}).json()
    assert replayed == drawn  # the seed returned replays the path


@pytest.mark.parametrize(
    ("change", "parameter", "says"),
    [
        ({"periods": None}, "periods", "periods is required"),
        ({"delta": None}, "delta", "delta is required"),
        ({"periods": 0}, "periods", "periods must be in [1, "),
        ({"periods": "1.5"}, "periods", "periods must be a whole number"),
        ({"startPrice": -70}, "startPrice", "startPrice must be in (0, "),
        ({"sigma": "abc"}, "sigma", "sigma must be a number"),
        ({"mu": "nan"}, "mu", "mu must be a finite number"),
        ({"delta": 0}, "delta", "delta must be in (0, "),
        ({"seed": -1}, "seed", "seed must be in [0, 2^64)"),
        ({"startprice": 70}, "startprice", "unknown parameter 'startprice'"),
        ({"periods": "+5"}, "periods", "periods must be a whole number"),
        ({"periods": "1_0"}, "periods", "periods must be a whole number"),
        ({"periods": "\u0663"}, "periods", "periods must be a whole number"),  # an Arabic-Indic 3
        ({"startPrice": " 70"}, "startPrice", "startPrice must be a number"),
        ({"periods": ["5", "6"]}, "periods", "periods is given 2 times"),
    ],
)
def test_gbm_refuses_bad_parameters_naming_them(http: httpx.Client, change, parameter, says) -> None:
    params = [
        (k, x)
        for k, v in {**ORIGINAL, **change}.items()
        if v is not None
        for x in (v if isinstance(v, list) else [v])
    ]
    reply = http.get("/gbm", params=params)
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert body["code"] == "invalid_argument"
    assert body["parameter"] == parameter
    assert body["message"].startswith(says), body["message"]


# ---- Connect unary -------------------------------------------------------------------------------


def _post(http: httpx.Client, method: str, body: dict, **kwargs) -> httpx.Response:
    return http.post(METHOD + method, json=body, **kwargs)


PATH_REQUEST = {
    "periods": 300,
    "delta": 0.5,
    "seed": "77",
    "merton": {
        "startPrice": 50,
        "mu": 0.02,
        "sigma": 0.2,
        "jumpIntensity": 3,
        "jumpMean": -0.02,
        "jumpStdev": 0.05,
    },
    "time": {"startTime": "2026-03-02T14:30:00Z"},
    "quotes": {"spreadBps": 5},
    "tickSize": 0.01,
}


def test_getprices_over_http_is_the_grpc_reply_in_canonical_json(http: httpx.Client, grpc_stub) -> None:
    request = json_format.ParseDict(PATH_REQUEST, pb.PathRequest())
    expected = grpc_stub.GetPrices(request)
    reply = _post(http, "GetPrices", PATH_REQUEST)
    assert reply.status_code == 200, reply.text
    assert json_format.ParseDict(reply.json(), pb.Prices()) == expected
    assert reply.json() == json.loads(json_format.MessageToJson(expected))  # as json_format writes it


def test_binary_protobuf_is_accepted_and_answered(http: httpx.Client, grpc_stub) -> None:
    request = pb.GbmRequest(periods=10, start_price=5, sigma=0.1, delta=1, seed=3)
    reply = http.post(
        METHOD + "GetGbmPrices",
        content=request.SerializeToString(),
        headers={"content-type": "application/proto"},
    )
    assert reply.headers["content-type"] == "application/proto"
    assert pb.GbmPrices.FromString(reply.content) == grpc_stub.GetGbmPrices(request)


def test_market_calls_answer_the_live_market(web: ServerThread, http: httpx.Client, grpc_stub) -> None:
    listed = _post(http, "ListInstruments", {}).json()
    assert json_format.ParseDict(listed, pb.ListInstrumentsResponse()) == grpc_stub.ListInstruments(
        pb.ListInstrumentsRequest()
    )
    web.advance_market(3)
    last = _post(http, "GetLastPrices", {"symbols": ["GLOBEX", "ACME"]}).json()
    tick = web.running.servicer.feed.last
    assert int(last["sequence"]) == tick.sequence
    symbols = web.running.servicer.feed.config.symbols
    assert [p["symbol"] for p in last["prices"]] == ["GLOBEX", "ACME"]
    assert last["prices"][1]["price"] == float(tick.prices[symbols.index("ACME")])


def test_connect_get_carries_the_request_in_the_query(http: httpx.Client, grpc_stub) -> None:
    message = json.dumps({"periods": 5, "startPrice": 9, "sigma": 0.2, "delta": 1, "seed": 8})
    reply = http.get(METHOD + "GetGbmPrices", params={"message": message, "encoding": "json"})
    assert reply.status_code == 200
    expected = grpc_stub.GetGbmPrices(pb.GbmRequest(periods=5, start_price=9, sigma=0.2, delta=1, seed=8))
    assert reply.json()["prices"] == list(expected.prices)


def test_errors_are_connect_errors_with_grpcs_message_and_field(http: httpx.Client, grpc_stub) -> None:
    reply = _post(http, "GetPrices", {"periods": 0, "delta": 1, "gbm": {"startPrice": 1}})
    with pytest.raises(grpc.RpcError) as over_grpc:
        grpc_stub.GetPrices(pb.PathRequest(periods=0, delta=1, gbm=pb.GbmModel(start_price=1)))
    assert reply.status_code == 400
    body = reply.json()
    assert body["code"] == "invalid_argument"
    assert body["message"] == over_grpc.value.details()
    (detail,) = body["details"]
    assert detail["type"] == "google.rpc.BadRequest"
    value = base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4))
    violation = error_details_pb2.BadRequest.FromString(value).field_violations[0]
    assert violation.field == "periods"


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code", "says"),
    [
        (
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "invalid_argument",
            "request is not a valid marketdata.v1.GbmRequest",
        ),
        ({"json": {"periods": 5, "nope": 1}}, 400, "invalid_argument", "request is not a valid"),
        ({"json": {"periods": "-1"}}, 400, "invalid_argument", "request is not a valid"),
        (
            {"content": b"periods=5", "headers": {"content-type": "text/plain"}},
            415,
            "invalid_argument",
            "Content-Type must be application/json or application/proto",
        ),
        (
            {"content": b"\xff\xfe", "headers": {"content-type": "application/proto"}},
            400,
            "invalid_argument",
            "request is not a valid",
        ),
        (
            {"json": {"periods": 5}, "headers": {"connect-timeout-ms": "soon"}},
            400,
            "invalid_argument",
            "Connect-Timeout-Ms must be",
        ),
    ],
)
def test_bad_requests_get_one_clear_error(http: httpx.Client, request_kwargs, status, code, says) -> None:
    reply = http.post(METHOD + "GetGbmPrices", **request_kwargs)
    assert reply.status_code == status, reply.text
    assert reply.json()["code"] == code
    assert reply.json()["message"].startswith(says), reply.json()["message"]


def test_connect_get_takes_base64_and_binary_messages(http: httpx.Client, grpc_stub) -> None:
    request = pb.GbmRequest(periods=5, start_price=9, sigma=0.2, delta=1, seed=8)
    expected = list(grpc_stub.GetGbmPrices(request).prices)
    as_json = base64.urlsafe_b64encode(json_format.MessageToJson(request).encode()).rstrip(b"=").decode()
    reply = http.get(METHOD + "GetGbmPrices", params={"message": as_json, "encoding": "json", "base64": "1"})
    assert reply.json()["prices"] == expected
    binary = base64.urlsafe_b64encode(request.SerializeToString()).decode()
    reply = http.get(METHOD + "GetGbmPrices", params={"message": binary, "encoding": "proto", "base64": "1"})
    assert pb.GbmPrices.FromString(reply.content).prices == expected


@pytest.mark.parametrize(
    ("content", "headers", "status", "says"),
    [
        (
            b"[]",
            {},
            400,
            "request is not a valid marketdata.v1.GetLastPricesRequest: a JSON object was expected",
        ),
        (
            b'{"symbols": [5, {"a": 1}]}',
            {},
            400,
            "request is not a valid marketdata.v1.GetLastPricesRequest: ",
        ),
        (
            b'{"symbols": ' + b"9" * 5000 + b"}",
            {},
            400,
            "request is not a valid marketdata.v1.GetLastPricesRequest: ",
        ),
        (b"{}", {"content-encoding": "gzip"}, 415, "content-encoding 'gzip' is not supported"),
        (b"{}", {"connect-content-encoding": "br"}, 415, "connect-content-encoding 'br' is not supported"),
    ],
)
def test_requests_connect_does_not_allow(http: httpx.Client, content, headers, status, says) -> None:
    reply = http.post(
        METHOD + "GetLastPrices", content=content, headers={"content-type": "application/json", **headers}
    )
    assert reply.status_code == status
    assert reply.json()["message"].startswith(says), reply.json()["message"]
    assert "Error" not in reply.json()["message"]  # no Python exception's name


def test_text_streams_come_in_smaller_chunks(http: httpx.Client) -> None:
    big = {"periods": 10_000, "delta": 1, "seed": 1, "gbm": {"startPrice": 5}}
    lines = http.post(METHOD + "StreamPrices", json=big).text.splitlines()
    assert [len(json.loads(line)["prices"]) for line in lines] == [4096, 4096, 1808]
    refused = http.post(METHOD + "StreamPrices", json={**big, "chunkSize": 20_000})
    assert refused.status_code == 400
    assert refused.json()["message"].startswith("chunk_size must be at most 16384 for a stream written as")
    enveloped = json.dumps({**big, "chunkSize": 20_000}).encode()
    connect = http.post(
        METHOD + "StreamPrices",
        content=struct.pack(">BI", 0, len(enveloped)) + enveloped,
        headers={"content-type": "application/connect+json"},
    )
    assert [flags for flags, _ in _frames(connect.content)] == [0, 2]  # Connect streams take more
    end_stream = struct.pack(">BI", 2, len(enveloped)) + enveloped
    flagged = http.post(
        METHOD + "StreamPrices", content=end_stream, headers={"content-type": "application/connect+json"}
    )
    assert flagged.status_code == 400


def test_head_only_for_the_page_and_static_files_which_come_whole(http: httpx.Client) -> None:
    assert http.head("/").status_code == 200
    assert http.head("/v1/subscribe").status_code == 405  # it would hold a subscription for good
    assert http.head("/gbm", params=ORIGINAL).status_code == 405
    whole = http.get("/static/app.js")
    ranged = http.get("/static/app.js", headers={"range": "bytes=0-0,2-2,4-4"})
    assert (ranged.status_code, ranged.content) == (200, whole.content)
    assert http.get("/static", headers={"host": "elsewhere.example"}).status_code == 404  # no redirect
    bad = http.get(METHOD + "GetGbmPrices", params={"message": "!!!", "encoding": "json", "base64": "1"})
    assert bad.status_code == 400 and "base64" in bad.json()["message"]


def test_unknown_methods_and_paths_and_client_streams(http: httpx.Client) -> None:
    reply = _post(http, "GetEverything", {})
    assert (reply.status_code, reply.json()["code"]) == (404, "unimplemented")
    assert "GetGbmPrices" in reply.json()["message"]
    reply = _post(http, "ManageSubscription", {})
    assert (reply.status_code, reply.json()["code"]) == (501, "unimplemented")
    assert "/v1/subscribe" in reply.json()["message"]
    assert http.get("/nowhere").status_code == 404
    assert http.delete("/gbm").status_code == 405


def test_a_body_over_4_mib_is_refused_before_it_is_read(http: httpx.Client) -> None:
    reply = http.post(
        METHOD + "GetPrices",
        content=b" " * (4 * 1024 * 1024 + 1),
        headers={"content-type": "application/json"},
    )
    assert reply.status_code == 413
    assert reply.json()["code"] == "resource_exhausted"


def test_formats_to_dict_is_json_format(grpc_stub) -> None:
    """The bulk conversion of long arrays writes what json_format writes."""
    request = pb.PathRequest(
        periods=500, delta=0.01, seed=5, gbm=pb.GbmModel(start_price=10, sigma=0.3), bar_interval="1h"
    )
    request.time.start_time.FromSeconds(1_767_000_000)
    for message in (
        grpc_stub.GetPrices(request),
        grpc_stub.GetPrices(pb.PathRequest(periods=400, delta=1, seed=6, gbm=pb.GbmModel(start_price=3))),
        pb.Prices(prices=[float("nan"), float("inf"), -float("inf")] * 20, timestamps=range(-30, 30)),
    ):
        assert json.loads(formats.message_json(message)) == json_format.MessageToDict(message)


# ---- streams ----------------------------------------------------------------------------------


STREAM_REQUEST = {
    "periods": 1000,
    "delta": 1,
    "seed": 11,
    "chunkSize": 300,
    "gbm": {"startPrice": 20, "mu": 0.01, "sigma": 0.25},
    "time": {"startTime": "2026-01-05T00:00:00Z"},
}


def _whole(grpc_stub, body: dict) -> pb.Prices:
    """The whole path of a stream's request, over gRPC."""
    unary = {k: v for k, v in body.items() if k != "chunkSize"}
    return grpc_stub.GetPrices(json_format.ParseDict(unary, pb.PathRequest()))


def test_ndjson_stream_is_the_path_in_chunks(http: httpx.Client, grpc_stub) -> None:
    reply = http.post(METHOD + "StreamPrices", json=STREAM_REQUEST)
    assert reply.headers["content-type"] == "application/x-ndjson"
    chunks = [json_format.ParseDict(json.loads(line), pb.PriceChunk()) for line in reply.text.splitlines()]
    assert [c.offset for c in chunks] == [0, 300, 600, 900]
    whole = _whole(grpc_stub, STREAM_REQUEST)
    assert [p for c in chunks for p in c.prices] == list(whole.prices)
    assert [t for c in chunks for t in c.timestamps] == list(whole.timestamps)


def test_csv_stream_is_the_path_row_by_row(http: httpx.Client, grpc_stub) -> None:
    reply = http.post(METHOD + "StreamPrices", json=STREAM_REQUEST, headers={"accept": "text/csv"})
    assert reply.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    whole = _whole(grpc_stub, STREAM_REQUEST)
    assert [float(r["price"]) for r in rows] == list(whole.prices)
    assert [int(r["index"]) for r in rows] == list(range(1000))
    assert rows[0]["time"] == "2026-01-05T00:00:00Z" and rows[1]["time"] == "2026-01-06T00:00:00Z"


def test_csv_of_a_basket_has_a_column_per_asset_and_of_bars_a_row_per_bar(
    http: httpx.Client, grpc_stub
) -> None:
    basket = {
        "periods": 50,
        "delta": 1,
        "seed": 4,
        "chunkSize": 7,
        "correlatedGbm": {
            "assets": [
                {"symbol": "A,1", "startPrice": 10, "sigma": 0.2},
                {"symbol": "B", "startPrice": 20, "sigma": 0.3},
            ],
            "correlation": [1, 0.5, 0.5, 1],
        },
    }
    rows = list(csv.reader(io.StringIO(http.post(METHOD + "StreamPrices?format=csv", json=basket).text)))
    assert rows[0] == ["index", "A,1", "B"]
    whole = _whole(grpc_stub, basket)
    assert [float(v) for row in rows[1:] for v in row[1:]] == list(whole.prices)
    bars = {**STREAM_REQUEST, "delta": 0.01, "barInterval": "1h", "chunkSize": 64}
    rows = list(csv.DictReader(io.StringIO(http.post(METHOD + "StreamPrices?format=csv", json=bars).text)))
    whole = _whole(grpc_stub, bars)
    assert [float(r["close"]) for r in rows] == list(whole.bars.close)
    assert [int(r["volume"]) for r in rows] == list(whole.bars.volume)


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    frames = []
    while data:
        flags, size = struct.unpack(">BI", data[:5])
        frames.append((flags, data[5 : 5 + size]))
        data = data[5 + size :]
    return frames


def test_connect_server_stream(http: httpx.Client, grpc_stub) -> None:
    request = {"periods": 9, "startPrice": 4, "sigma": 0.1, "delta": 1, "seed": 1, "chunkSize": 4}
    payload = json.dumps(request).encode()
    reply = http.post(
        METHOD + "StreamGbmPrices",
        content=struct.pack(">BI", 0, len(payload)) + payload,
        headers={"content-type": "application/connect+json"},
    )
    assert reply.headers["content-type"] == "application/connect+json"
    frames = _frames(reply.content)
    assert [flags for flags, _ in frames] == [0, 0, 0, 2]
    assert json.loads(frames[-1][1]) == {}
    prices = [p for _, data in frames[:-1] for p in json.loads(data)["prices"]]
    whole = grpc_stub.GetGbmPrices(pb.GbmRequest(periods=9, start_price=4, sigma=0.1, delta=1, seed=1))
    assert prices == list(whole.prices)
    bad = json.dumps({"periods": 0}).encode()
    reply = http.post(
        METHOD + "StreamGbmPrices",
        content=struct.pack(">BI", 0, len(bad)) + bad,
        headers={"content-type": "application/connect+json"},
    )
    ((flags, data),) = _frames(reply.content)
    assert flags == 2 and json.loads(data)["error"]["code"] == "invalid_argument"


def test_a_stream_that_fails_before_its_first_chunk_answers_with_a_status(http: httpx.Client) -> None:
    reply = http.post(METHOD + "StreamPrices", json={**STREAM_REQUEST, "periods": 0})
    assert reply.status_code == 400
    assert reply.json()["message"].startswith("periods must be")
    assert http.post(METHOD + "StreamPrices?format=xml", json=STREAM_REQUEST).status_code == 400
    refused = http.post(METHOD + "Subscribe?format=csv", json={})
    assert refused.status_code == 400 and "format csv is for price streams" in refused.json()["message"]


def test_subscribe_over_post_is_ndjson_of_market_events(web: ServerThread) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{web.running.http_port}", timeout=30) as client:
        with client.stream("POST", METHOD + "Subscribe", json={"symbols": ["ACME"]}) as reply:
            lines = reply.iter_lines()
            first = json_format.ParseDict(json.loads(next(lines)), pb.MarketEvent())
            web.advance_market()
            second = json_format.ParseDict(json.loads(next(lines)), pb.MarketEvent())
    assert first.HasField("snapshot") and second.HasField("update")
    assert second.sequence == first.sequence + 1


def test_a_deadline_ends_a_paced_stream_with_an_error_line(http: httpx.Client) -> None:
    paced = {**STREAM_REQUEST, "chunkSize": 1, "ticksPerSecond": 20}
    reply = http.post(METHOD + "StreamPrices", json=paced, headers={"connect-timeout-ms": "300"})
    lines = [json.loads(line) for line in reply.text.splitlines()]
    assert 1 <= len(lines) - 1 < 1000
    assert lines[-1] == {"error": {"code": "deadline_exceeded", "message": lines[-1]["error"]["message"]}}


def test_leaving_a_stream_stops_its_work(web: ServerThread) -> None:
    tracker = web.tracker
    paced = {"periods": 100000, "delta": 1, "chunkSize": 1, "ticksPerSecond": 50, "gbm": {"startPrice": 1}}
    with httpx.Client(base_url=f"http://127.0.0.1:{web.running.http_port}", timeout=30) as client:
        with client.stream("POST", METHOD + "StreamPrices", json=paced) as reply:
            lines = reply.iter_lines()  # held: dropping it would close the response
            assert "prices" in json.loads(next(lines))
            assert tracker.wait_for(lambda t: t.active >= 1, timeout=10)
    assert tracker.wait_idle(timeout=10), "the stream went on generating after its client left"


def test_http_calls_share_the_grpc_limits() -> None:
    """One price stream allowed: held over gRPC, a second over HTTP is refused, naming the flag."""
    srv = ServerThread(http_port=0, limits=Limits(max_streams=1))
    try:
        paced = pb.PathRequest(
            periods=50000, delta=1, chunk_size=1, ticks_per_second=20, gbm=pb.GbmModel(start_price=1)
        )
        with grpc.insecure_channel(srv.target) as channel:
            stream = market_data_pb2_grpc.MarketDataServiceStub(channel).StreamPrices(paced)
            next(stream)
            with httpx.Client(base_url=f"http://127.0.0.1:{srv.running.http_port}", timeout=30) as client:
                reply = client.post(METHOD + "StreamPrices", json=json_format.MessageToDict(paced))
                assert reply.status_code == 429
                assert reply.json()["code"] == "resource_exhausted"
                assert "--max-streams" in reply.json()["message"]
            stream.cancel()
    finally:
        srv.stop()


# ---- the live market as Server-Sent Events ---------------------------------------------------------


def _events(lines: Iterator[str], count: int) -> list[dict]:
    """The next ``count`` events (comments as {"comment": text})."""
    events, event = [], {}
    for line in lines:
        if line.startswith(":"):
            events.append({"comment": line[1:].strip()})
        elif line == "":
            if event:
                events.append(event)
                event = {}
        else:
            name, _, value = line.partition(":")
            event[name] = value.strip()
        if len(events) >= count:
            return events
    return events


def test_sse_snapshot_then_an_update_per_tick(web: ServerThread) -> None:
    feed = web.running.servicer.feed
    with httpx.Client(base_url=f"http://127.0.0.1:{web.running.http_port}", timeout=30) as client:
        with client.stream("GET", "/v1/subscribe", params={"symbols": "ACME,UMBRELLA"}) as reply:
            assert reply.headers["content-type"] == "text/event-stream"
            lines = reply.iter_lines()
            (snapshot,) = _events(lines, 1)
            assert snapshot["event"] == "snapshot"
            assert int(snapshot["id"]) == feed.last.sequence
            web.advance_market(2)
            updates = _events(lines, 2)
    assert [e["event"] for e in updates] == ["update", "update"]
    assert [int(e["id"]) for e in updates] == [int(snapshot["id"]) + 1, int(snapshot["id"]) + 2]
    data = json.loads(updates[-1]["data"])
    assert int(data["sequence"]) == feed.last.sequence
    symbols = feed.config.symbols
    assert data["update"]["prices"] == [
        {"symbol": s, "price": float(feed.last.prices[symbols.index(s)])} for s in ("ACME", "UMBRELLA")
    ]


def test_sse_heartbeats_are_comments_and_last_event_id_resumes_with_a_snapshot(web: ServerThread) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{web.running.http_port}", timeout=30) as client:
        params = {"symbols": "ACME", "heartbeat_seconds": "0.1"}
        with client.stream("GET", "/v1/subscribe", params=params, headers={"last-event-id": "41"}) as reply:
            events = _events(reply.iter_lines(), 3)
    assert events[0] == {"comment": "resuming after event 41 with a fresh snapshot"}
    assert events[1]["event"] == "snapshot"
    assert events[2]["comment"].startswith("heartbeat ")


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"symbols": "NOPE"}, "unknown symbols: NOPE"),
        ({"heartbeat_seconds": "0"}, "heartbeat_seconds must be in"),
        ({"heartbeat_seconds": "x"}, "heartbeat_seconds must be a number"),
        ({"symbol": "ACME"}, "unknown query parameter 'symbol'"),
    ],
)
def test_sse_refuses_bad_subscriptions_with_a_status(http: httpx.Client, params, says) -> None:
    reply = http.get("/v1/subscribe", params=params)
    assert reply.status_code == 400
    assert reply.json()["message"].startswith(says), reply.json()["message"]


def test_sse_subscribers_count_against_the_subscription_limits() -> None:
    srv = ServerThread(http_port=0, feed_limits=FeedLimits(max_subscribers=1))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{srv.running.http_port}", timeout=30) as client:
            with client.stream("GET", "/v1/subscribe") as first:
                lines = first.iter_lines()  # held: dropping it would close the response
                _events(lines, 1)
                second = client.get("/v1/subscribe")
                assert second.status_code == 429
                assert "--max-subscribers" in second.json()["message"]
    finally:
        srv.stop()


def test_shutdown_ends_sse_streams_with_an_error_event() -> None:
    srv = ServerThread(http_port=0)
    with httpx.Client(base_url=f"http://127.0.0.1:{srv.running.http_port}", timeout=30) as client:
        with client.stream("GET", "/v1/subscribe") as reply:
            lines = reply.iter_lines()
            _events(lines, 1)
            stopping = srv.submit(srv.running.shutdown(5.0))
            (error,) = _events(lines, 1)
            stopping.result(10)
    assert error["event"] == "error"
    assert json.loads(error["data"])["code"] == "unavailable"
    srv.stop()


def test_http_calls_are_counted_and_logged_as_calls_of_their_method(caplog) -> None:
    srv = ServerThread(http_port=0, observability=ObservabilityOptions(metrics_port=0, access_log=True))
    try:
        base = f"http://127.0.0.1:{srv.running.http_port}"
        with (
            caplog.at_level("INFO", logger="server.access"),
            httpx.Client(base_url=base, timeout=30) as client,
        ):
            assert client.get("/gbm", params=ORIGINAL).status_code == 200
            assert client.get("/gbm", params={**ORIGINAL, "periods": 0}).status_code == 400
            assert client.get("/gbm", params=ORIGINAL).status_code == 200
            streamed = client.post(METHOD + "StreamPrices", json={**STREAM_REQUEST, "time": None})
            assert len(streamed.text.splitlines()) == 4
        samples = scrape(srv.running.observability.metrics_port)
        stream = grpc_labels("StreamPrices", "server_stream")
        assert value(samples, "grpc_server_msg_sent_total", **stream) == 4  # each chunk counted once
        method = grpc_labels("GetGbmPrices")
        assert value(samples, "grpc_server_handled_total", **method, grpc_code="OK") == 2
        assert value(samples, "grpc_server_handled_total", **method, grpc_code="INVALID_ARGUMENT") == 1
        lines = [r.getMessage() for r in caplog.records if r.name == "server.access"]
        assert len(lines) == 4
        assert lines[1].startswith("/marketdata.v1.MarketDataService/GetGbmPrices INVALID_ARGUMENT ")
        assert re.search(r" from ipv4:127\.0\.0\.1:\d+$", lines[2])
    finally:
        srv.stop()
