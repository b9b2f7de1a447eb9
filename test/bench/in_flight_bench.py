#!/usr/bin/python3
"""Auto max_in_flight benchmark (not run by CI): one sender with every
setting at its default (only the credentials and the API base URL set)
against the mock Graph API at 100 ms latency, the mock answering the
phone-number GET with throughput level HIGH (1,000 msg/s, Meta's
"Throughput" page).  Prints msg/s (target >= 900), the requests in flight
the dispatcher used, and the launcher's and the worker's memory.

Run as root or postgres:
    test/bench/in_flight_bench.sh [--messages 20000] [--latency 0.1] [--level HIGH]
Uses PG_CONFIG's bin directory, a throw-away cluster on a private port and
socket directory under /tmp, and the mock on 127.0.0.1 only.
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--messages", type=int, default=20000)
ap.add_argument("--latency", type=float, default=0.1)
ap.add_argument("--level", default="HIGH")
ap.add_argument("--port", type=int, default=54988)
ap.add_argument("--max-rate", type=float, default=None,
                help="set max_rate (default: left at its default), for comparison")
ap.add_argument("--in-flight", type=int, default=None,
                help="set max_in_flight (default: left at its default, auto), for comparison")
a = ap.parse_args()

pg_config = os.environ.get("PG_CONFIG", "/usr/lib/postgresql/15/bin/pg_config")
bindir = subprocess.check_output([pg_config, "--bindir"], text=True).strip()
here = os.path.dirname(os.path.abspath(__file__))
mock_py = os.path.join(here, "..", "mock", "graph_mock.py")
work = tempfile.mkdtemp(prefix="wa_in_flight_bench.")
data = os.path.join(work, "data")
sock = work
PORT = str(a.port)


def run(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def psql(sql):
    return run(os.path.join(bindir, "psql"), "-X", "-q", "-A", "-t", "-h", sock, "-p", PORT,
               "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql).strip()


def control(port, cfg):
    req = urllib.request.Request("http://127.0.0.1:%d/_control" % port, data=json.dumps(cfg).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()


def rss(pid):
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pid_of(backend_type):
    return psql("SELECT pid FROM pg_stat_activity WHERE backend_type = '%s'" % backend_type)


def wait_for(sql, timeout=900):
    dl = time.time() + timeout
    while time.time() < dl:
        if psql(sql) == "t":
            return
        time.sleep(0.05)
    raise SystemExit("timed out: " + sql)


mock = None
try:
    run(os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-N")
    with open(os.path.join(data, "postgresql.conf"), "a") as f:
        # no wa_notify.database: the launcher finds the database by itself
        f.write("shared_preload_libraries = 'wa_notify'\n"
                "listen_addresses = ''\nunix_socket_directories = '%s'\nport = %s\n"
                "shared_buffers = 256MB\n" % (sock, PORT))
    run(os.path.join(bindir, "pg_ctl"), "-D", data, "-l", os.path.join(work, "log"), "-w", "start")
    log = os.path.join(work, "requests.jsonl")
    portfile = os.path.join(work, "mockport")
    mock = subprocess.Popen(["/usr/bin/python3", mock_py, "--log", log, "--port-file", portfile])
    while not os.path.exists(portfile):
        time.sleep(0.02)
    mport = int(open(portfile).read())
    control(mport, {"throughput_level": a.level, "rules": {"*": {"delay": a.latency}}})
    psql("CREATE EXTENSION wa_notify")
    # the credentials only (and the master switch off while the queue fills)
    psql("UPDATE wa_notify.setting SET updated_at = now(), value = CASE name "
         "WHEN 'access_token' THEN 'EAAbench-token-0123456789' WHEN 'phone_number_id' THEN '1065403522' "
         "WHEN 'api_base_url' THEN 'http://127.0.0.1:%d' WHEN 'enabled' THEN 'false' END "
         "WHERE name IN ('access_token','phone_number_id','api_base_url','enabled')" % mport)
    if a.in_flight is not None:
        psql("UPDATE wa_notify.setting SET value = '%d', updated_at = now() WHERE name = 'max_in_flight'"
             % a.in_flight)
    if a.max_rate is not None:
        psql("UPDATE wa_notify.setting SET value = '%g', updated_at = now() WHERE name = 'max_rate'"
             % a.max_rate)
    wait_for("SELECT throughput_level = '%s' FROM wa_notify.state" % a.level)
    print("defaults: " + psql("SELECT string_agg(name || '=' || coalesce(value, '') || "
                              "CASE WHEN value IS DISTINCT FROM default_value THEN ' (set)' ELSE '' END, ', ' ORDER BY name) "
                              "FROM wa_notify.setting WHERE name IN ('min_delay','max_delay','max_per_batch',"
                              "'max_rate','max_in_flight','recipient_gap','polling_interval')"))
    wait_for("SELECT worker_activity LIKE 'paused: master switch%' FROM wa_notify.state")
    launcher, worker = pid_of("wa_notify launcher"), pid_of("wa_notify worker")
    psql("INSERT INTO wa_notify.message (event, order_key, phone, params) "
         "SELECT 'order_placed', 'B-' || g, (5511900000000 + g)::text, "
         "jsonb_build_object('customer_name', 'Cliente ' || g, 'order_number', g::text, 'total', '99,90') "
         "FROM generate_series(1, %d) g" % a.messages)
    t0 = time.time()
    psql("UPDATE wa_notify.setting SET value = 'true', updated_at = now() WHERE name = 'enabled'")
    wait_for("SELECT count(*) = 0 FROM wa_notify.message WHERE status IN ('queued', 'sending')")
    wall = time.time() - t0
    posts = [json.loads(l) for l in open(log)]
    posts = [p for p in posts if p["method"] == "POST"]
    span = posts[-1]["t"] - posts[0]["t"]
    # requests in flight, as the mock saw them: arrivals within one latency
    times = sorted(p["t"] for p in posts)
    peak, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - a.latency:
            j += 1
        peak = max(peak, i - j + 1)
    st = psql("SELECT string_agg(status || '=' || n, ' ') FROM (SELECT status, count(*) n "
              "FROM wa_notify.message GROUP BY 1 ORDER BY 1) s")
    print("level %s, latency %d ms: %d messages, %d POSTs in %.2f s (first to last request) -> %.0f msg/s; "
          "wall %.2f s -> %.0f msg/s; statuses: %s"
          % (a.level, a.latency * 1000, a.messages, len(posts), span, len(posts) / span, wall,
             a.messages / wall, st))
    print("requests started within one latency (~in flight), peak: %d; auto size at this latency: %s"
          % (peak, psql("SELECT wa_notify._in_flight_for('%s', 0, 0, 1, %f)" % (a.level, a.latency))))
    print("RSS: launcher %d kB, worker %d kB" % (rss(launcher), rss(worker)))
finally:
    if mock:
        mock.kill()
    subprocess.run([os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "fast", "stop"], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
