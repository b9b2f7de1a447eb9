#!/usr/bin/python3
"""Dispatcher benchmark (not run by CI): throughput against the mock Graph
API at 0 ms and 100 ms injected latency, enqueue-to-request latency with
zero delays, and the worker's memory before and after.

Run as root or postgres:
    test/bench/dispatch_bench.sh [--messages 20000] [--in-flight 200]
Uses PG_CONFIG's bin directory, a throw-away cluster on a private port and
socket directory under /tmp, and the mock on 127.0.0.1 only.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--messages", type=int, default=20000)
ap.add_argument("--in-flight", type=int, default=200)
ap.add_argument("--latency-samples", type=int, default=200)
ap.add_argument("--port", type=int, default=54987)
a = ap.parse_args()

pg_config = os.environ.get("PG_CONFIG", "/usr/lib/postgresql/15/bin/pg_config")
bindir = subprocess.check_output([pg_config, "--bindir"], text=True).strip()
here = os.path.dirname(os.path.abspath(__file__))
mock_py = os.path.join(here, "..", "mock", "graph_mock.py")
work = tempfile.mkdtemp(prefix="wa_dispatch_bench.")
data = os.path.join(work, "data")
sock = work
PORT = str(a.port)


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def psql(sql):
    return run(os.path.join(bindir, "psql"), "-X", "-q", "-A", "-t", "-h", sock, "-p", PORT,
               "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql).strip()


def control(port, cfg):
    req = urllib.request.Request("http://127.0.0.1:%d/_control" % port, data=json.dumps(cfg).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()


def mem(pid):
    out = {}
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssShmem"):
                out[k] = int(v.split()[0])
    return out


def worker_pid():
    return psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'")


def wait_for(sql, timeout=600):
    dl = time.time() + timeout
    while time.time() < dl:
        if psql(sql) == "t":
            return
        time.sleep(0.05)
    raise SystemExit("timed out: " + sql)


def read_log(path, skip):
    out = []
    with open(path) as f:
        for i, line in enumerate(f):
            if i < skip:
                continue
            o = json.loads(line)
            if o["method"] == "POST":
                out.append(o)
    return out


mock = None
try:
    run(os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-N")
    with open(os.path.join(data, "postgresql.conf"), "a") as f:
        f.write("shared_preload_libraries = 'wa_notify'\nwa_notify.database = 'postgres'\n"
                "listen_addresses = ''\nunix_socket_directories = '%s'\nport = %s\n"
                "shared_buffers = 256MB\nsynchronous_commit = on\nfsync = on\n" % (sock, PORT))
    run(os.path.join(bindir, "pg_ctl"), "-D", data, "-l", os.path.join(work, "log"), "-w", "start")
    log = os.path.join(work, "requests.jsonl")
    portfile = os.path.join(work, "mockport")
    mock = subprocess.Popen(["/usr/bin/python3", mock_py, "--log", log, "--port-file", portfile])
    while not os.path.exists(portfile):
        time.sleep(0.02)
    mport = int(open(portfile).read())
    psql("CREATE EXTENSION wa_notify")
    psql("UPDATE wa_notify.setting SET updated_at = now(), value = CASE name "
         "WHEN 'access_token' THEN 'EAAbench' WHEN 'phone_number_id' THEN '1065403522' "
         "WHEN 'api_base_url' THEN 'http://127.0.0.1:%d' WHEN 'min_delay' THEN '0' "
         "WHEN 'max_delay' THEN '0' WHEN 'max_rate' THEN '0' WHEN 'recipient_gap' THEN '0' "
         "WHEN 'max_per_batch' THEN '10000000' WHEN 'max_in_flight' THEN '%d' "
         "WHEN 'enabled' THEN 'false' END "
         "WHERE name IN ('access_token','phone_number_id','api_base_url','min_delay','max_delay',"
         "'max_rate','recipient_gap','max_per_batch','max_in_flight','enabled')" % (mport, a.in_flight))
    wait_for("SELECT worker_activity LIKE 'paused: master switch%' FROM wa_notify.state")
    pid = worker_pid()
    mem0 = mem(pid)
    print("worker pid %s, memory before: %s kB" % (pid, mem0))
    seen = 0
    results = {}
    for latency in (0.0, 0.1):
        control(mport, {"rules": {"*": {"delay": latency}} if latency else {}})
        tag = "L%d" % int(latency * 1000)
        psql("INSERT INTO wa_notify.message (event, order_key, phone, params) "
             "SELECT 'order_placed', '%s-' || g, (5511900000000 + g)::text, "
             "jsonb_build_object('customer_name', 'Cliente ' || g, 'order_number', g::text, 'total', '99,90') "
             "FROM generate_series(1, %d) g" % (tag, a.messages))
        t0 = time.time()
        psql("UPDATE wa_notify.setting SET value = 'true', updated_at = now() WHERE name = 'enabled'")
        wait_for("SELECT count(*) = 0 FROM wa_notify.message WHERE status IN ('queued', 'sending')")
        t1 = time.time()
        posts = read_log(log, seen)
        seen += len(posts) + sum(1 for _ in [])  # POSTs only are counted below
        st = psql("SELECT string_agg(status || '=' || n, ' ') FROM (SELECT status, count(*) n FROM wa_notify.message "
                  "WHERE order_key LIKE '%s-%%' GROUP BY 1 ORDER BY 1) s" % tag)
        span = posts[-1]["t"] - posts[0]["t"] if len(posts) > 1 else 0
        results[latency] = (len(posts), t1 - t0, span, st)
        print("latency %3d ms: %d messages, %d POSTs, wall %.2f s -> %.0f msg/s "
              "(first to last request %.2f s -> %.0f msg/s); statuses: %s"
              % (latency * 1000, a.messages, len(posts), t1 - t0, a.messages / (t1 - t0), span,
                 len(posts) / span if span else 0, st))
        psql("UPDATE wa_notify.setting SET value = 'false', updated_at = now() WHERE name = 'enabled'")
        wait_for("SELECT worker_activity LIKE 'paused: master switch%' FROM wa_notify.state")
        seen = sum(1 for _ in open(log))
        m = mem(pid)
        print("  worker memory after this run: %s kB (RssAnon %+d kB since start)" % (m, m["RssAnon"] - mem0["RssAnon"]))
    mem1 = mem(pid)
    print("worker memory after %d messages: %s kB; growth VmRSS %+d kB, RssAnon %+d kB"
          % (2 * a.messages, mem1, mem1["VmRSS"] - mem0["VmRSS"], mem1["RssAnon"] - mem0["RssAnon"]))

    # enqueue-to-request latency, zero delays, one message per transaction
    control(mport, {"reset": True})
    psql("UPDATE wa_notify.setting SET value = 'true', updated_at = now() WHERE name = 'enabled'")
    wait_for("SELECT worker_activity = 'idle' FROM wa_notify.state")
    base = sum(1 for _ in open(log))
    lat = []
    for i in range(a.latency_samples):
        mid = psql("INSERT INTO wa_notify.message (event, order_key, phone, params) VALUES "
                   "('order_placed', 'LAT-%d', '%d', '{\"customer_name\":\"Ana\",\"order_number\":\"1\",\"total\":\"9,90\"}') "
                   "RETURNING id || ' ' || extract(epoch FROM created_at)" % (i, 5511970000000 + i))
        time.sleep(0.02)
    wait_for("SELECT count(*) = 0 FROM wa_notify.message WHERE status IN ('queued', 'sending')")
    created = dict(l.split("|") for l in psql(
        "SELECT id, extract(epoch FROM created_at) FROM wa_notify.message WHERE order_key LIKE 'LAT-%'").splitlines())
    for p in read_log(log, base):
        mid = json.loads(p["body"])["biz_opaque_callback_data"].split(".")[0]  # "<id>.<mac>"
        lat.append((p["t"] - float(created[mid])) * 1000)
    lat.sort()
    print("latency messages:", psql("SELECT string_agg(status || '=' || n, ' ') FROM (SELECT status, count(*) n "
                                    "FROM wa_notify.message WHERE order_key LIKE 'LAT-%' GROUP BY 1) s"))
    print("enqueue-to-request latency over %d single-row commits: median %.1f ms, p90 %.1f ms, max %.1f ms"
          % (len(lat), statistics.median(lat), lat[int(len(lat) * 0.9)], lat[-1]))
finally:
    if mock:
        mock.kill()
    subprocess.run([os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "fast", "stop"], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
