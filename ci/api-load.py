#!/usr/bin/env python3
"""Load test of the HTTP API (run by ci/bench.sh; standard library only).

Starts `nuvyn-executor serve` on loopback over a small local source, sends N
`POST /jobs/create` from C concurrent clients (keep-alive connections), then follows every
accepted job with `GET /jobs/{id}` until it is final, stops the server with SIGTERM and checks:

- every request was answered, with 200 (accepted) or 429 (queue full, with Retry-After);
- no job lost: every accepted job ended `succeeded`, and `executor_runs` holds exactly one
  row per accepted job (run_mode api), with the status the API gave, and no other rows;
- no job run twice: the `sources` table's Delta log has exactly one commit per accepted job
  (commits carry the run id), and /info counted as many starts as acceptances.

Prints throughput and p50/p99 latency of the create and status calls. Bounded: at most
DEADLINE seconds in all, else it fails.

Usage: api-load.py BIN WORKDIR [N] [CLIENTS]
"""
import atexit
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

BIN, WORK = sys.argv[1], sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
CLIENTS = int(sys.argv[4]) if len(sys.argv) > 4 else 50
DEADLINE = float(os.environ.get("API_LOAD_DEADLINE_SECS", "600"))
KEY = "load-test-key-0123456789"
start_all = time.monotonic()


def fail(msg):
    print(f"api load test FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def left():
    r = DEADLINE - (time.monotonic() - start_all)
    if r <= 0:
        fail(f"not done within {DEADLINE:.0f} s")
    return r


lake = os.path.join(WORK, "lake")
os.makedirs(lake, exist_ok=True)
with open(os.path.join(lake, "people.csv"), "w") as f:
    f.write("id,name,score\n" + "".join(f"{i},n{i},{i * 0.5}\n" for i in range(50)))
wh = os.path.join(WORK, "warehouse")

s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
log = open(os.path.join(WORK, "serve.log"), "w")
server = subprocess.Popen(
    [BIN, "serve", "--listen", f"127.0.0.1:{port}", "--warehouse", wh, "--allow-local"],
    env={**os.environ, "NUVYN_API_KEY": KEY},
    stdout=subprocess.DEVNULL,
    stderr=log,
)

def _stop_server():
    if server.poll() is None:
        server.kill()
        server.wait()


atexit.register(_stop_server)
HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


def conn():
    return http.client.HTTPConnection("127.0.0.1", port, timeout=60)


def call(c, method, path, body=None):
    t = time.monotonic()
    c.request(method, path, body=body, headers=HEADERS)
    r = c.getresponse()
    data = r.read()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data, time.monotonic() - t


while True:
    left()
    if server.poll() is not None:
        fail(f"the server exited with {server.returncode}; see {log.name}")
    try:
        c = conn()
        if call(c, "GET", "/health")[0] == 200:
            break
    except OSError:
        time.sleep(0.1)

creates = []  # (status, seconds, job_id or None)
statuses = []  # seconds
lock = threading.Lock()
next_i = [0]
errors = []


def creator():
    c = conn()
    while True:
        with lock:
            i = next_i[0]
            if i >= N:
                return
            next_i[0] += 1
        body = json.dumps({"job_type": "metadata_extraction", "data_source_path": lake,
                           "workflow_id": f"load_{i:05d}", "source_id": "s"})
        try:
            st, h, data, secs = call(c, "POST", "/jobs/create", body)
        except (OSError, http.client.HTTPException) as e:
            with lock:
                errors.append(f"request {i}: {e!r}")
            c = conn()
            continue
        job = None
        if st == 200:
            job = json.loads(data)["job_id"]
        elif st == 429:
            if h.get("retry-after") is None:
                with lock:
                    errors.append(f"request {i}: 429 without Retry-After")
        else:
            with lock:
                errors.append(f"request {i}: HTTP {st} {data[:200]!r}")
        with lock:
            creates.append((st, secs, job))


t0 = time.monotonic()
threads = [threading.Thread(target=creator) for _ in range(CLIENTS)]
for t in threads:
    t.start()
for t in threads:
    t.join(left())
create_secs = time.monotonic() - t0
if errors:
    fail(f"{len(errors)} requests not answered with 200/429, e.g. {errors[:3]}")
if len(creates) != N:
    fail(f"{N - len(creates)} requests unanswered")
accepted = [j for st, _, j in creates if st == 200]
refused = sum(1 for st, _, _ in creates if st == 429)
if len(set(accepted)) != len(accepted):
    fail("a job id was given twice")

# Follow every accepted job to its end, C clients polling.
final = {}
pending = list(accepted)


def follower():
    c = conn()
    while True:
        with lock:
            if not pending:
                return
            job = pending.pop()
        st, _, data, secs = call(c, "GET", f"/jobs/{job}")
        with lock:
            statuses.append(secs)
        if st != 200:
            with lock:
                errors.append(f"GET /jobs/{job}: HTTP {st}")
            return
        v = json.loads(data)
        if v["status"] in ("created", "running"):
            with lock:
                pending.insert(0, job)
            time.sleep(0.25)
        else:
            with lock:
                final[job] = v["status"]


t1 = time.monotonic()
threads = [threading.Thread(target=follower) for _ in range(CLIENTS)]
for t in threads:
    t.start()
for t in threads:
    t.join(left())
follow_secs = time.monotonic() - t1
if errors:
    fail(f"status calls failed: {errors[:3]}")
if len(final) != len(accepted):
    fail(f"{len(accepted) - len(final)} accepted jobs never finished")
bad = {j: st for j, st in final.items() if st != "succeeded"}
if bad:
    fail(f"{len(bad)} jobs did not succeed: {list(bad.items())[:3]}")
info = json.loads(call(conn(), "GET", "/info")[2])
if info["jobs"]["started"] != len(accepted) or info["jobs"]["finished"] != len(accepted):
    fail(f"/info counted {info['jobs']} for {len(accepted)} accepted jobs")

server.send_signal(signal.SIGTERM)
try:
    code = server.wait(timeout=left())
except subprocess.TimeoutExpired:
    server.kill()
    fail("the server did not stop on SIGTERM")
if code != 0:
    fail(f"the server exited with {code} on SIGTERM; see {log.name}")

# The warehouse agrees with the answers.
out = subprocess.run(
    [BIN, "sql", "SELECT run_id, status, run_mode FROM executor_runs", "--format", "json",
     "--warehouse", wh],
    capture_output=True, text=True, timeout=left())
if out.returncode != 0:
    fail(f"reading executor_runs: {out.stderr}")
rows = json.loads(out.stdout)
ids = [r["run_id"] for r in rows]
if len(ids) != len(set(ids)):
    fail("executor_runs has more than one row for a job")
if set(ids) != set(accepted):
    fail(f"executor_runs rows {len(ids)} != accepted jobs {len(accepted)} "
         f"(missing {len(set(accepted) - set(ids))}, extra {len(set(ids) - set(accepted))})")
if any(r["status"] != final[r["run_id"]] or r["run_mode"] != "api" for r in rows):
    fail("a row's status differs from what the API answered")
log_dir = os.path.join(wh, "_executor_metadata", "sources", "_delta_log")
commits = {}
for name in os.listdir(log_dir):
    if not name.endswith(".json"):
        continue
    with open(os.path.join(log_dir, name)) as fh:
        for line in fh:
            ci = json.loads(line).get("commitInfo")
            if ci and "nuvyn.run_id" in ci:
                commits[ci["nuvyn.run_id"]] = commits.get(ci["nuvyn.run_id"], 0) + 1
twice = [j for j in accepted if commits.get(j, 0) != 1]
if twice:
    fail(f"{len(twice)} jobs did not write sources exactly once, e.g. {twice[0]}: {commits.get(twice[0], 0)}")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000


lat = [secs for _, secs, _ in creates]
print(f"api load: {N} creates from {CLIENTS} clients in {create_secs:.2f} s "
      f"({N / create_secs:.0f} req/s): {len(accepted)} accepted, {refused} refused (429); "
      f"create p50 {pct(lat, 50):.1f} ms p99 {pct(lat, 99):.1f} ms")
print(f"api load: {len(accepted)} jobs finished {follow_secs:.1f} s after the burst "
      f"({len(accepted) / (create_secs + follow_secs):.1f} jobs/s); {len(statuses)} status calls "
      f"p50 {pct(statuses, 50):.1f} ms p99 {pct(statuses, 99):.1f} ms; "
      f"executor_runs and the Delta log agree (one row, one write per job)")
