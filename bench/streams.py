"""Presence streams under load, for `just bench` (called by bench/run.py with the API and a
worker running on the bench database).

Stream clients are plain asyncio sockets speaking HTTP/1.1 and reading server-sent
events, spread over several processes and loopback source addresses (127.0.0.2, ...), as
one process may hold at most 20,000 open files here. Their event loop is uvloop's
(`bench/run.py` installs it): with asyncio's own, this one Python process, not the
server, was what a reconnect storm waited on (15,000 reopened streams at 0.2 of a core
of API time, the client at a full core).
"""

import asyncio
import collections
import json
import multiprocessing
import os
import random
import re
import resource
import statistics
import time
import urllib.request

import uvloop

asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def raise_file_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Stream:
    """One open stream: its events as (arrival time, event name, id, data)."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.buffer = b""
        self.last_id = None
        self.retry_ms = 3000

    @classmethod
    async def open(cls, port, path, token, source, last_event_id=None):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id is not None else ""
        # HTTP/1.0: the body comes unframed (no chunked encoding) until the server closes.
        writer.write(f"GET {path} HTTP/1.0\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
                     f"{extra}\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(head.decode(errors="replace"))
        return cls(reader, writer)

    async def next_event(self):
        """The next event; comments and `retry:` are skipped."""
        while True:
            end = self.buffer.find(b"\n\n")
            if end >= 0:
                block, self.buffer = self.buffer[:end].decode(errors="replace"), self.buffer[end + 2:]
                event, ident, data = None, None, None
                for line in block.split("\n"):
                    line = line.strip("\r")
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("id: "):
                        ident = int(line[4:])
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif line.startswith("retry: "):
                        self.retry_ms = int(line[7:])
                if event:
                    if ident is not None:
                        self.last_id = ident
                    return time.perf_counter(), event, ident, json.loads(data)
                continue
            chunk = await self.reader.read(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk

    def close(self):
        self.writer.close()


def wait_streams_closed(port, limit=60):
    """Until the API holds no stream (or `limit` seconds pass)."""
    deadline = time.time() + limit
    while time.time() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
            for line in response.read().decode().splitlines():
                if line.startswith("presence_api_streams_open "):
                    if float(line.split()[1]) == 0:
                        return
        time.sleep(0.5)


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- worker processes (each holds part of the streams) ------------------------------------

def _hold_idle(args):
    """Opens `count` idle streams and holds them until told to stop; reports how many."""
    port, tokens, ids, count, source, opened, stop = args
    raise_file_limit()

    async def main():
        streams = []
        for n in range(count):
            token = tokens[n % len(tokens)]
            user_ids = ",".join(str(ids[(n * 7 + k) % len(ids)]) for k in range(10))
            for attempt in range(5):
                try:
                    stream = await Stream.open(port, f"/api/presence/stream/?ids={user_ids}", token, source)
                    await stream.next_event()
                    streams.append(stream)
                    break
                except (OSError, RuntimeError):
                    await asyncio.sleep(0.2 * (attempt + 1))
        opened.put(len(streams))
        while stop.empty():
            await asyncio.sleep(0.2)
        stop.get()
        for stream in streams:
            stream.close()

    asyncio.run(main())


class IdleStreams:
    """`total` idle streams over `processes` client processes, held until `release`."""

    def __init__(self, port, tokens, ids, total, processes=3):
        ctx = multiprocessing.get_context("fork")
        self.opened, self.stop = ctx.Queue(), ctx.Queue()
        per = total // processes
        self.workers = [ctx.Process(target=_hold_idle,
                                    args=((port, tokens, ids, per, f"127.0.0.{n + 2}",
                                           self.opened, self.stop),))
                        for n in range(processes)]
        begun = time.perf_counter()
        for w in self.workers:
            w.start()
        self.held = sum(self.opened.get(timeout=900) for _ in self.workers)
        self.open_seconds = time.perf_counter() - begun

    def release(self):
        for _ in self.workers:
            self.stop.put(True)
        for w in self.workers:
            w.join(timeout=60)


def idle_streams(port, api_pid, tokens, ids, total):
    """RSS of the API before and after `total` idle streams open, and per stream."""
    before = rss_kib(api_pid)
    idle = IdleStreams(port, tokens, ids, total)
    time.sleep(2)
    after = rss_kib(api_pid)
    idle.release()
    return {"streams": idle.held, "open_seconds": idle.open_seconds, "rss_before_kib": before,
            "rss_after_kib": after,
            "kib_per_stream": (after - before) / idle.held if idle.held else None}


# -- latency, fan-out, reconnect storm (one process, asyncio) -----------------------------

def login(port, username, password):
    body = json.dumps({"username": username, "password": password}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/users/login/", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def delivery_latency(port, tokens, target_id, target_name, password, count=1000):
    """`count` streams watching one user; the time from a login's response to its arrival
    on each."""
    raise_file_limit()

    async def main():
        streams = []
        for n in range(count):
            stream = await Stream.open(port, f"/api/presence/stream/?ids={target_id}",
                                       tokens[n % len(tokens)], f"127.0.0.{2 + n % 3}")
            await stream.next_event()
            streams.append(stream)
        await asyncio.sleep(1.5)  # any change already in flight settles out of the sample
        loop = asyncio.get_running_loop()
        waiting = [asyncio.create_task(first_presence(s)) for s in streams]
        answered = await loop.run_in_executor(None, lambda: (login(port, target_name, password),
                                                             time.perf_counter())[1])
        arrivals = await asyncio.gather(*waiting)
        for s in streams:
            s.close()
        delays = sorted((t - answered) * 1000 for t in arrivals)
        return {"streams": count, "p50_ms": delays[len(delays) // 2],
                "p99_ms": delays[int(len(delays) * 0.99) - 1], "max_ms": delays[-1]}

    async def first_presence(stream):
        while True:
            arrived, event, _, data = await stream.next_event()
            if event == "presence" and any(c["id"] == target_id for c in data["changes"]):
                return arrived

    return asyncio.run(main())


def fan_out(port, tokens, changers, seconds=10, streams_count=1000, watch=100):
    """`streams_count` streams, each watching `watch` of the `changers` (user id, token),
    while every changer changes its custom status once a second: changes delivered per
    second, and how many changes were made."""
    raise_file_limit()
    ids = [user_id for user_id, _ in changers]

    async def main():
        streams = []
        for n in range(streams_count):
            watched = ",".join(str(ids[(n * 13 + k) % len(ids)]) for k in range(watch))
            stream = await Stream.open(port, f"/api/presence/stream/?ids={watched}",
                                       tokens[n % len(tokens)], f"127.0.0.{2 + n % 3}")
            await stream.next_event()
            streams.append(stream)
        delivered = 0
        stop = time.perf_counter() + seconds

        async def count(stream):
            nonlocal delivered
            while time.perf_counter() < stop + 2:
                try:
                    _, event, _, data = await asyncio.wait_for(stream.next_event(), 1)
                except asyncio.TimeoutError:
                    continue
                if event == "presence":
                    delivered += len(data["changes"])

        readers = [asyncio.create_task(count(s)) for s in streams]
        made = await change_statuses(port, changers, seconds)
        await asyncio.gather(*readers)
        for s in streams:
            s.close()
        return {"streams": streams_count, "watching": watch, "changes_made": made,
                "statuses_delivered": delivered,
                "delivered_per_sec": delivered / seconds}

    return asyncio.run(main())


async def change_statuses(port, changers, seconds):
    """Every changer PUTs a new custom status once a second, over keep-alive connections."""
    connections = []
    for _, token in changers[:200]:
        connections.append(await asyncio.open_connection("127.0.0.1", port))
    made = 0
    begun = time.perf_counter()
    for second in range(seconds):
        tick = begun + second

        async def put(n):
            nonlocal made
            _, token = changers[n]
            body = json.dumps({"text": f"busy {second}"}).encode()
            request = (f"PUT /api/users/me/status/ HTTP/1.1\r\nHost: bench\r\n"
                       f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            for _ in range(3):
                reader, writer = connections[n % len(connections)]
                try:
                    writer.write(request)
                    await writer.drain()
                    head = await reader.readuntil(b"\r\n\r\n")
                    break
                except (OSError, asyncio.IncompleteReadError):
                    # The server closed a connection idle past its keep-alive (5 s) while
                    # the storm slowed the rest of the round: reconnect, as HTTP clients do.
                    connections[n % len(connections)] = await asyncio.open_connection(
                        "127.0.0.1", port)
            else:
                raise RuntimeError("a status change found no connection")
            length = int([line for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")][0].split(b":")[1])
            await reader.readexactly(length)
            made += 1

        # One request in flight per connection at a time.
        for start in range(0, len(changers), len(connections)):
            await asyncio.gather(*(put(n) for n in range(start, min(start + len(connections), len(changers)))))
        await asyncio.sleep(max(0, tick + 1 - time.perf_counter()))
    for _, writer in connections:
        writer.close()
    return made


def stream_open_buckets(metrics_port):
    """The API's latency histogram of stream opens (to the first frames, server side):
    (upper bound in seconds, cumulative count) per bucket."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
        text = response.read().decode()
    buckets = []
    for line in text.splitlines():
        match = re.match(r'presence_api_http_request_duration_seconds_bucket\{route="/api/presence/stream",le="([^"]+)"\} (\S+)', line)
        if match:
            buckets.append((float(match.group(1)), float(match.group(2))))
    return buckets


def bucket_quantile(before, after, q):
    """The upper bound of the bucket holding quantile `q` of what was counted between two
    readings of a histogram."""
    deltas = [(bound, count - dict(before).get(bound, 0)) for bound, count in after]
    total = deltas[-1][1] if deltas else 0
    for bound, count in deltas:
        if total and count >= q * total:
            return bound
    return float("inf")


def stream_starts(metrics_port):
    """How many streams this API started from memory and from PostgreSQL so far."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
        text = response.read().decode()
    counts = {"memory": 0, "database": 0}
    for line in text.splitlines():
        match = re.match(r'presence_api_stream_starts_total\{kind="\w+",source="(\w+)"\} (\S+)', line)
        if match:
            counts[match.group(1)] += int(float(match.group(2)))
    return counts


def reconnect_storm(port_from, kill_from, port_to, metrics_port_to, tokens, changers, count,
                    transactions):
    """`count` streams on one API replica (`port_from`) dropped at once by killing it
    (`kill_from()`), each reopened on another (`port_to`) with its Last-Event-ID after
    the `retry` the server gave it (1 to 3 s, as EventSource does), while changes keep
    coming: the time until all are live again (from the kill, and from each reconnect),
    whether each ends with the same state as a fresh snapshot (no gap), and what the storm
    asked of PostgreSQL (the replica's starts by source; `transactions()` counts the
    database's commits and rollbacks)."""
    raise_file_limit()
    ids = [user_id for user_id, _ in changers][:50]
    watched = ",".join(map(str, ids))

    failed_opens = collections.Counter()

    async def connect(port, n, last_id):
        for attempt in range(30):
            try:
                return await Stream.open(port, f"/api/presence/stream/?ids={watched}",
                                         tokens[n % len(tokens)], f"127.0.0.{2 + n % 3}",
                                         last_event_id=last_id)
            except (OSError, RuntimeError, asyncio.IncompleteReadError) as error:
                failed_opens[str(error)[:60] if isinstance(error, RuntimeError)
                             else type(error).__name__ + str(getattr(error, "errno", ""))] += 1
                # Refused (503 while the pool is busy): back off with jitter, as
                # EventSource's `retry` makes browsers do.
                await asyncio.sleep(0.2 * (attempt + 1) * (0.5 + random.random()))
        raise RuntimeError("could not connect")

    async def main():
        states = []
        streams = []
        for n in range(count):
            stream = await connect(port_from, n, None)
            _, _, _, data = await stream.next_event()
            states.append({u["id"]: u for u in data["users"]})
            streams.append(stream)
        changing = asyncio.create_task(change_statuses(port_to, changers[:50], 3))
        starts_before, transactions_before = stream_starts(metrics_port_to), transactions()
        buckets_before = stream_open_buckets(metrics_port_to)
        killed = time.perf_counter()
        kill_from()
        waits = []

        async def reconnect(n, stream):
            """Reads to the end (the replica is gone), waits `retry`, reopens elsewhere."""
            try:
                while True:
                    _, event, _, data = await stream.next_event()
                    if event == "presence":
                        states[n].update({u["id"]: u for u in data["changes"]})
            except (EOFError, OSError, asyncio.IncompleteReadError):
                pass
            stream.close()
            await asyncio.sleep(max(0, killed + stream.retry_ms / 1000 - time.perf_counter()))
            asked = time.perf_counter()
            reopened = await connect(port_to, n, stream.last_id)
            waits.append(time.perf_counter() - asked)
            return reopened

        reopened = await asyncio.gather(*(reconnect(n, s) for n, s in enumerate(streams)))
        live_after = time.perf_counter() - killed
        starts_after, transactions_after = stream_starts(metrics_port_to), transactions()
        buckets_after = stream_open_buckets(metrics_port_to)
        await changing
        await asyncio.sleep(2.5)  # the last batch of every stream

        truth_stream = await connect(port_to, 0, None)
        _, _, _, truth = await truth_stream.next_event()
        truth = {u["id"]: u["status_text"] for u in truth["users"]}

        def texts(state):
            return {i: u["status_text"] for i, u in state.items()}

        async def drain(n, stream):
            """Reads until this stream's state is the truth (or 30 s pass): a gap would
            leave it different for good."""
            deadline = time.perf_counter() + 30
            while texts(states[n]) != truth and time.perf_counter() < deadline:
                try:
                    _, event, _, data = await asyncio.wait_for(
                        stream.next_event(), max(0.01, deadline - time.perf_counter()))
                except (asyncio.TimeoutError, EOFError):
                    return
                if event == "snapshot":
                    states[n] = {u["id"]: u for u in data["users"]}
                elif event == "presence":
                    states[n].update({u["id"]: u for u in data["changes"]})

        await asyncio.gather(*(drain(n, s) for n, s in enumerate(reopened)))
        gaps = sum(1 for state in states if texts(state) != truth)
        for s in reopened:
            s.close()
        truth_stream.close()
        waits.sort()
        return {"streams": count, "all_live_after_s": live_after, "streams_with_a_gap": gaps,
                "reconnect_to_live_p50_ms": 1000 * waits[len(waits) // 2],
                "reconnect_to_live_p99_ms": 1000 * waits[int(len(waits) * 0.99)],
                "reconnect_to_live_max_ms": 1000 * waits[-1],
                "server_open_p50_le_ms": 1000 * bucket_quantile(buckets_before, buckets_after, 0.5),
                "server_open_p99_le_ms": 1000 * bucket_quantile(buckets_before, buckets_after, 0.99),
                "failed_opens": dict(failed_opens),
                "starts_from_memory": starts_after["memory"] - starts_before["memory"],
                "starts_from_database": starts_after["database"] - starts_before["database"],
                "database_transactions": transactions_after - transactions_before}

    return asyncio.run(main())
