"""`sentinel serve` answers an OpenAI chat-completion request on loopback for a forged model."""

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from test_runtime import chat_folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body, timeout):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read())


def test_serve_answers_chat_completion(tmp_path):
    folder = chat_folder(tmp_path / "forged")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "sentinel.cli", "serve", str(folder), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body = {"messages": [{"role": "user", "content": "hello world"}], "max_tokens": 4, "temperature": 0}
        deadline, answer = time.monotonic() + 90, None
        while answer is None and time.monotonic() < deadline:
            assert server.poll() is None, server.stdout.read()[-2000:]
            try:
                answer = post(f"http://127.0.0.1:{port}/v1/chat/completions", body, timeout=60)
            except (ConnectionError, urllib.error.URLError):
                time.sleep(0.5)
        assert answer is not None, "server did not answer within 90 s"
        status, data = answer
        assert status == 200
        assert data["object"] == "chat.completion"
        assert data["choices"][0]["message"]["role"] == "assistant"
        assert data["usage"]["completion_tokens"] <= 4 and data["usage"]["prompt_tokens"] > 0
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_serve_refuses_missing_model_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sentinel.cli", "serve", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: model folder {tmp_path / 'nope'} not found"]
