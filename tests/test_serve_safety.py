"""`sentinel serve` on 127.0.0.1 serves only its own model, to no web page, and answers bad requests with 4xx.

One real server (our HTTP layer around mlx-lm's public generation functions) runs for the module on a
tiny forged model; no request can make it load another folder. Every refusal is OpenAI's error object
{"error": {"message", "type", "param", "code"}}, so the `openai` client shows our text.
"""

import http.client
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from test_runtime import chat_folder
from test_serve import free_port

ALLOWED = "http://ok.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = chat_folder(tmp_path_factory.mktemp("serve") / "tiny-forged")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sentinel.cli", "serve", str(folder), "--port", str(port),
                             "--allow-origin", ALLOWED],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            status, _, _ = request(port, "GET", "/health")
            if status == 200:
                break
        except OSError:
            time.sleep(0.3)
    yield {"port": port, "folder": folder, "proc": proc}
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=30)


def request(port, method, path, body=None, headers=None, raw=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def chat_body(**extra):
    return {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 2, "temperature": 0, **extra}


def test_answers_under_its_own_name_without_cors(server):
    status, headers, body = request(server["port"], "POST", "/v1/chat/completions", chat_body())
    assert status == 200
    data = json.loads(body)
    assert data["model"] == "tiny-forged"  # not "default_model", not a path
    assert data["usage"]["completion_tokens"] == 2
    assert not any(k.lower().startswith("access-control") for k in headers)


def test_other_model_folders_are_refused_without_disk_facts(server, tmp_path):
    other = chat_folder(tmp_path / "other-model")  # a real, loadable model folder
    for name in (str(other), "/etc", "/does/not/exist", "../"):
        status, _, body = request(server["port"], "POST", "/v1/chat/completions", chat_body(model=name))
        assert status == 404
        text = body.decode()
        assert name not in text and str(server["folder"]) not in text and "exist" not in text
        assert json.loads(body) == {"error": {
            "message": "this server serves only the model 'tiny-forged' (GET /v1/models)",
            "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}
    status, _, _ = request(server["port"], "POST", "/v1/chat/completions", chat_body(model="tiny-forged"))
    assert status == 200
    for extra in ({"draft_model": str(other)}, {"adapters": str(other)}):
        status, _, body = request(server["port"], "POST", "/v1/chat/completions", chat_body(**extra))
        assert status == 400 and str(other) not in body.decode()


def test_models_endpoint_lists_the_served_model(server):
    status, _, body = request(server["port"], "GET", "/v1/models")
    assert status == 200
    data = json.loads(body)
    assert [m["id"] for m in data["data"]] == ["tiny-forged"]
    assert str(server["folder"]) not in body.decode()
    assert request(server["port"], "GET", "/v1/models/tiny-forged")[0] == 200
    assert request(server["port"], "GET", "/v1/models/other")[0] == 404


def test_web_pages_cannot_drive_it(server):
    evil = {"Origin": "http://evil.example", "Content-Type": "application/json"}
    status, headers, _ = request(server["port"], "POST", "/v1/chat/completions", chat_body(), headers=evil)
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    status, headers, _ = request(server["port"], "OPTIONS", "/v1/chat/completions", headers=evil)
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    ok = {"Origin": ALLOWED}
    status, headers, _ = request(server["port"], "POST", "/v1/chat/completions", chat_body(), headers=ok)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == ALLOWED


@pytest.mark.parametrize("raw,headers,status,message", [
    (b"\xff\xfe{}", {}, 400, "request body is not UTF-8"),
    (b"{not json", {}, 400, "request body is not valid JSON"),
    (b"[1, 2]", {}, 400, "request body must be a JSON object"),
    (b"", {"Content-Length": "999999999999"}, 413, "request body of 999,999,999,999 bytes exceeds the limit"),
    (b"", {"Content-Length": "-5"}, 400, "invalid Content-Length header"),
    (json.dumps({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/x.png"}}]}]}).encode(), {}, 400,
     "image inputs are not supported"),
    (json.dumps({"prompt": "hello world " * 200, "max_tokens": 2}).encode(), {}, 400,
     "this server accepts at most 128 (the model's context)"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**9}).encode(), {}, 400,
     "'max_tokens' must be an integer between 1 and 128"),
    (json.dumps({"model": ["tiny-forged"], "messages": [{"role": "user", "content": "hi"}]}).encode(), {}, 400,
     "'model' must be a string"),
    (json.dumps({"model": {"id": "x"}, "messages": [{"role": "user", "content": "hi"}]}).encode(), {}, 400,
     "'model' must be a string"),
    (b'{"messages": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", {}, 400, "request body is nested too deeply"),
    (json.dumps({"messages": [[[[[{"role": "user"}]]]]]}).encode(), {}, 400, "messages[0] must be an object"),
    (json.dumps({"messages": [{"role": "user", "content": {"a": [[[1]]]}}]}).encode(), {}, 400,
     "messages[0].content must be a string or a list of text parts"),
    (json.dumps({"messages": "hello"}).encode(), {}, 400, "'messages' must be a non-empty list"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}).encode(), {}, 400,
     "'temperature' must be a number between 0 and 2"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', {}, 400, "holds NaN"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}).encode(), {}, 400,
     "'stream' must be true or false"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}).encode(),
     {}, 400, "'tools' is not supported"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "bogus": 1}).encode(), {}, 400,
     "unknown field 'bogus'"),
    (json.dumps({"prompt": ["a", "b"]}).encode(), {}, 400, "'prompt' must be a non-empty string"),
], ids=["non-utf8", "bad-json", "not-object", "huge-length", "negative-length", "image-url", "prompt-too-long",
        "max-tokens-beyond-context", "model-list", "model-object", "deeply-nested", "nested-message",
        "nested-content", "messages-string", "temperature-string", "nan", "stream-string", "tools", "unknown-field",
        "prompt-list"])
def test_bad_requests_get_4xx(server, raw, headers, status, message):
    path = "/v1/completions" if b'"prompt"' in raw else "/v1/chat/completions"
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=60)
    conn.putrequest("POST", path)
    headers = {"Content-Length": str(len(raw)), **headers}
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    conn.send(raw)
    response = conn.getresponse()
    body = response.read().decode()
    conn.close()
    error = json.loads(body)["error"]
    assert response.status == status and message in error["message"], body
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert request(server["port"], "GET", "/health")[0] == 200  # still serving


def test_openai_client_reads_our_replies_and_errors(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{server['port']}/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == ["tiny-forged"]
    hello = [{"role": "user", "content": "hello"}]
    reply = client.chat.completions.create(model="tiny-forged", messages=hello, max_tokens=3, temperature=0)
    assert reply.usage.completion_tokens == 3 and reply.choices[0].finish_reason == "length"
    chunks = list(client.chat.completions.create(model="tiny-forged", messages=hello, max_tokens=3, stream=True,
                                                 stream_options={"include_usage": True}, temperature=0))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == reply.choices[0].message.content and chunks[-1].usage.completion_tokens == 3
    text = client.completions.create(model="tiny-forged", prompt="hello", max_tokens=2)
    assert text.usage.completion_tokens == 2 and text.choices[0].text
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=hello)
    assert "this server serves only the model 'tiny-forged'" in e.value.message
    assert (e.value.code, e.value.param, e.value.type) == ("model_not_found", "model", "invalid_request_error")
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-forged", messages=hello, temperature=5)
    assert "'temperature' must be a number between 0 and 2, got 5" in e.value.message
    assert e.value.param == "temperature"


def test_stop_strings_end_the_reply(server):
    body = chat_body(max_tokens=8)
    status, _, full = request(server["port"], "POST", "/v1/chat/completions", body)
    text = json.loads(full)["choices"][0]["message"]["content"]
    assert status == 200 and len(text) > 2
    stop = text[1:3]
    status, _, cut = request(server["port"], "POST", "/v1/chat/completions", {**body, "stop": [stop]})
    choice = json.loads(cut)["choices"][0]
    assert choice["message"]["content"] == text[:text.index(stop)] and choice["finish_reason"] == "stop"


def test_unknown_routes_and_methods_get_error_objects(server):
    for method, path, status in (("GET", "/nope", 404), ("POST", "/v1/embeddings", 404), ("PUT", "/v1/models", 501)):
        got, _, body = request(server["port"], method, path, body={} if method != "GET" else None)
        assert got == status and set(json.loads(body)["error"]) == {"message", "type", "param", "code"}


def test_zz_sigterm_stops_cleanly(server):
    """Runs last in this module: SIGTERM ends the server within seconds, exit 143, no error line, no traceback
    anywhere, and the log holds at most one line per request."""
    proc = server["proc"]
    tic = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    log = proc.stdout.read()
    assert time.monotonic() - tic < 30
    assert proc.returncode == 128 + signal.SIGTERM, log[-3000:]
    assert "Traceback" not in log
    assert "Warning" not in log and "warn" not in log.lower() and "error:" not in log
    lines = log.strip().splitlines()
    assert lines[0].startswith("serving tiny-forged on http://127.0.0.1:") and lines[-1] == "stopped (SIGTERM)"
    requests = lines[1:-1]
    assert len(requests) >= 30 and all(line.split()[0] in ("GET", "POST", "PUT", "OPTIONS", "-") for line in requests)


def test_port_in_use_is_one_line(tmp_path):
    import socket

    folder = chat_folder(tmp_path / "m")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "sentinel.cli", "serve", str(folder), "--port", str(port)],
                              capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: cannot listen on 127.0.0.1:{port} (Address already in use)"]
