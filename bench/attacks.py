#!/usr/bin/env python3
"""The hostile campaign of issue 16, rerun: `python3 bench/attacks.py`.

Starts the release API and a worker on a scratch database (`presence_attacks`) with the
default limits (but 40 registrations per address, for the setup; 300 streams a process), tries each attack as an ordinary account would, and prints what it got:
HEADs on the stream, streams and tickets across a logout, far-future status ends, a
ticket flood, a registration flood beside a victim's login, and status changes against
Redis memory. Needs the local PostgreSQL and Redis. Not part of CI.
"""

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = "presence_attacks"
PORT, METRICS_PORT, WORKER_PORT = 18900, 18909, 19190
PREFIX = "presence-attacks"
ENV = {
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
    "REDIS_PREFIX": PREFIX,
    "RUST_LOG": "warn",
}


def request(method, path, token=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    try:
        return response.status, json.loads(data) if data else None
    except ValueError:
        return response.status, None


def metric(name):
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics") as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def redis_keys():
    out = subprocess.run(["redis-cli", "--scan", "--pattern", f"{PREFIX}:*"],
                         capture_output=True, text=True, check=True).stdout
    return [key for key in out.split() if key]


def account(name):
    request("POST", "/api/users/register/", body={"username": name, "password": "password123"})
    status, body = request("POST", "/api/users/login/", body={"username": name, "password": "password123"})
    assert status == 200, (status, body)
    return body["token"], body["user"]["id"]


def open_stream(query, token):
    """A raw stream socket; returns it once the answer's headers came, and the status."""
    sock = socket.create_connection(("127.0.0.1", PORT))
    sock.sendall(f"GET /api/presence/stream/?{query} HTTP/1.1\r\nHost: a\r\n"
                 f"Authorization: Bearer {token}\r\n\r\n".encode())
    head = sock.recv(4096).decode(errors="replace")
    return sock, int(head[9:12])


def seconds_until_the_stream_ends(sock, started, limit=30):
    """Until the answer's last chunk (the connection itself may stay open for keep-alive)."""
    sock.settimeout(limit)
    seen = b"\r\n"  # the end of the chunk open_stream read
    try:
        while not seen.endswith(b"\r\n0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            seen = (seen + chunk)[-16:]
    except socket.timeout:
        return None
    except OSError:
        pass
    return round(time.time() - started, 3)


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "presence-api", "-p", "presence-worker"],
                   cwd=ROOT, check=True)
    subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-c",
                    f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)"], check=True)
    for key in redis_keys():
        subprocess.run(["redis-cli", "del", key], capture_output=True)
    env = dict(os.environ, **ENV)
    api = subprocess.Popen([ROOT / "target/release/presence-api"], env=dict(
        env, LISTEN_ADDR=f"127.0.0.1:{PORT}", METRICS_LISTEN_ADDR=f"127.0.0.1:{METRICS_PORT}",
        # The defaults but for this one: the setup's 35 accounts come from this address.
        STREAMS_PER_PROCESS="300", REGISTRATIONS_PER_ADDRESS_PER_HOUR="40"),
        stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([ROOT / "target/release/presence-worker"], env=dict(
        env, WORKER_HTTP_ADDR=f"127.0.0.1:{WORKER_PORT}"), stderr=subprocess.DEVNULL)
    results = {}
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        # 1. 300 HEADs from 30 accounts on a 300-stream process, then a new user's stream.
        accounts = [account(f"header{n}") for n in range(30)]
        heads = [request("HEAD", f"/api/presence/stream/?ids={uid}", token)[0]
                 for token, uid in accounts for _ in range(10)]
        token, uid = account("newcomer")
        sock, status = open_stream(f"ids={uid}", token)
        results["300 HEADs: statuses"] = sorted(set(heads))
        results["300 HEADs: streams open after"] = metric("presence_api_streams_open") - 1
        results["then a new user's stream"] = status
        sock.close()
        # 2. A stream and a ticket across a logout.
        token, uid = account("leaver")
        _, ticket = request("POST", "/api/presence/tickets/", token)
        sock, _ = open_stream(f"ids={uid}", token)
        logged_out = time.time()
        request("POST", "/api/users/logout/", token)
        results["stream ended after logout (s)"] = seconds_until_the_stream_ends(sock, logged_out)
        conn = http.client.HTTPConnection("127.0.0.1", PORT)
        conn.request("GET", f"/api/presence/stream/?ids={uid}&ticket={ticket['ticket']}")
        results["ticket minted before logout, used after"] = conn.getresponse().status
        # 3. 5,000 far-future ends, then auto; 4. 500 changes: Redis keys before and after.
        token, _ = account("hoarder")
        before = len(redis_keys())
        started = time.time()
        refused = 0
        for n in range(5000):
            until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600 + n * 480))
            status, _ = request("PUT", "/api/users/me/status/", token, {"availability": "dnd", "until": until})
            refused += status != 200
        request("PUT", "/api/users/me/status/", token, {"availability": "auto"})
        results["5,000 ends 1 h to 28 d ahead, then auto: Redis keys added"] = len(redis_keys()) - before
        results["  of them refused"] = refused
        results["  took (s)"] = round(time.time() - started, 1)
        status, _ = request("PUT", "/api/users/me/status/", token,
                            {"availability": "dnd", "until": "2100-01-01T00:00:00Z"})
        results["an end in 2100"] = status
        # 5. A ticket flood from one token.
        token, _ = account("minter")
        with ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(lambda _: request("POST", "/api/presence/tickets/", token)[0],
                                     range(20_000)))
        results["20,000 tickets minted: live ticket keys"] = sum(
            ":ticket:" in key for key in redis_keys())
        results["  statuses"] = sorted(set(statuses))
        # 6. 400 registrations at 40 concurrent, a victim logging in meanwhile.
        account("victim")
        alone = []
        for _ in range(5):
            t = time.time()
            request("POST", "/api/users/login/", body={"username": "victim", "password": "password123"})
            alone.append(time.time() - t)
        during = []

        def victim():
            for _ in range(10):
                t = time.time()
                request("POST", "/api/users/login/", body={"username": "victim", "password": "password123"})
                during.append(time.time() - t)

        with ThreadPoolExecutor(41) as pool:
            watcher = pool.submit(victim)
            statuses = list(pool.map(lambda n: request(
                "POST", "/api/users/register/", body={"username": f"flood{n}", "password": "password123"})[0],
                range(400)))
            watcher.result()
        results["400 registrations at 40 concurrent"] = {
            str(s): statuses.count(s) for s in sorted(set(statuses))}
        results["victim's login median alone / during (s)"] = (
            round(statistics.median(alone), 3), round(statistics.median(during), 3))
    finally:
        for process in (api, worker):
            process.terminate()
            process.wait(timeout=30)
        subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-c",
                        f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)"], check=False)
        for key in redis_keys():
            subprocess.run(["redis-cli", "del", key], capture_output=True)
    for what, value in results.items():
        print(f"{what}: {value}")


if __name__ == "__main__":
    sys.exit(main())
