#!/usr/bin/python3
"""Senders benchmark (not run by CI; issue 12): 4 senders x 5,000 messages
against the mock Graph API at 100 ms latency.  Prints each sender's msg/s
alone, then all four together (aggregate msg/s and each sender's share as a
ratio of what it got alone), and the worker's and the launcher's RSS.

Each sender is a number as Meta upgrades it: its phone-number GET answers
throughput level HIGH (1,000 msg/s), and every pacing setting is left at
its default (max_in_flight auto), so "alone" is what the number's own caps
give it, not what the worker's CPU gives one sender, and "together" shows
whether the worker keeps up with four such numbers at once (target: each at
least 0.9 x alone, aggregate at least 3,000 msg/s).  --in-flight N and
--max-rate R set every sender's caps instead (R = 0: no rate cap; then the
worker's CPU is the only bound and the shares say nothing).

Run as root or postgres:
    test/bench/senders_bench.sh [--messages 5000] [--senders 4] [--level HIGH] [--in-flight N] [--max-rate R] [--latency 0.1]
Uses PG_CONFIG's bin directory, a throw-away cluster on a private port and
socket directory under /tmp, and the mock on 127.0.0.1 only.  Rates are
measured at the mock, from the first to the last request of a sender.
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
ap.add_argument("--messages", type=int, default=5000, help="per sender")
ap.add_argument("--senders", type=int, default=4)
ap.add_argument("--in-flight", type=int, default=None, help="max_in_flight of each sender (default: auto)")
ap.add_argument("--max-rate", type=float, default=None, help="max_rate of each sender (default: the setting's)")
ap.add_argument("--level", default="HIGH", help="the throughput level the mock's phone-number GET answers")
ap.add_argument("--latency", type=float, default=0.1)
ap.add_argument("--port", type=int, default=54988)
a = ap.parse_args()

pg_config = os.environ.get("PG_CONFIG", "/usr/lib/postgresql/15/bin/pg_config")
bindir = subprocess.check_output([pg_config, "--bindir"], text=True).strip()
here = os.path.dirname(os.path.abspath(__file__))
mock_py = os.path.join(here, "..", "mock", "graph_mock.py")
work = tempfile.mkdtemp(prefix="wa_senders_bench.")
data = os.path.join(work, "data")
sock = work
PORT = str(a.port)
SENDERS = ["default"] + ["store_%d" % i for i in range(2, a.senders + 1)]
PNID = {s: str(106540352242900 + i) for i, s in enumerate(SENDERS)}


def run(*cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit("%s failed: %s" % (cmd[0], r.stderr.strip()))
    return r.stdout


def psql(sql):
    return run(os.path.join(bindir, "psql"), "-X", "-q", "-A", "-t", "-h", sock, "-p", PORT,
               "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql).strip()


def control(port, cfg):
    req = urllib.request.Request("http://127.0.0.1:%d/_control" % port, data=json.dumps(cfg).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()


def rss(pid):
    """the worker's private memory (RssAnon, kB): VmRSS also counts the
    shared buffers it touched"""
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def cpu_s(pid):
    """user + system CPU seconds a process has used"""
    with open("/proc/%s/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(sql, timeout=900):
    dl = time.time() + timeout
    while time.time() < dl:
        if psql(sql) == "t":
            return
        time.sleep(0.1)
    raise SystemExit("timed out: " + sql)


def posts_since(path, skip):
    out = []
    with open(path) as f:
        for i, line in enumerate(f):
            if i >= skip:
                o = json.loads(line)
                if o["method"] == "POST":
                    out.append(o)
    return out


def lines(path):
    with open(path) as f:
        return sum(1 for _ in f)


def rates(posts):
    """msg/s per sender (by phone number ID in the path), first to last request"""
    by = {}
    for p in posts:
        by.setdefault(p["path"].split("/")[2], []).append(p["t"])
    out = {}
    for s in SENDERS:
        ts = by.get(PNID[s], [])
        out[s] = (len(ts), (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 1 and ts[-1] > ts[0] else 0)
    span = max(p["t"] for p in posts) - min(p["t"] for p in posts) if len(posts) > 1 else 0
    return out, (len(posts) - 1) / span if span else 0


def batch(tag, senders):
    """queue messages for these senders while the master switch is off, then send them"""
    psql("UPDATE wa_notify.setting SET value = 'false', updated_at = now() WHERE name = 'enabled'")
    wait_for("SELECT worker_activity LIKE 'paused: master switch%' FROM wa_notify.state")
    # each sender its own customers (one recipient's messages from several
    # numbers are spaced by recipient_gap, as they should be)
    for s in senders:
        psql("INSERT INTO wa_notify.message (event, order_key, phone, params, sender) "
             "SELECT 'order_placed', '%s-%s-' || g, (5511900000000 + %d + g)::text, "
             "jsonb_build_object('customer_name', 'Cliente ' || g, 'order_number', g::text, 'total', '99,90'), "
             "'%s' FROM generate_series(1, %d) g" % (tag, s, 100000 * SENDERS.index(s), s, a.messages))
    # statistics as autovacuum would have them on a shop's database that
    # has been running for a while (a fresh cluster's first minute has
    # none: the worker's plans would be made for an empty table)
    psql("ANALYZE wa_notify.message")
    skip = lines(log)
    c0 = cpu_s(pid)
    t0 = time.time()
    psql("UPDATE wa_notify.setting SET value = 'true', updated_at = now() WHERE name = 'enabled'")
    # the mock's log tells when every request came: a query scanning the
    # message table ten times a second would take the worker's CPU
    want = a.messages * len(senders)
    with open(log) as f:
        f.seek(0, 2)
        seen = 0
        while seen < want:
            chunk = f.read()
            seen += chunk.count("\n")
            if not chunk:
                time.sleep(0.05)
    wait_for("SELECT count(*) = 0 FROM wa_notify.message WHERE status IN ('queued', 'sending')")
    wall = time.time() - t0
    cpu = cpu_s(pid) - c0
    st = psql("SELECT string_agg(status || '=' || n, ' ') FROM (SELECT status, count(*) n FROM wa_notify.message "
              "WHERE order_key LIKE '%s-%%' GROUP BY 1 ORDER BY 1) s" % tag)
    return posts_since(log, skip), wall, st, cpu


mock = None
try:
    run(os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-N")
    with open(os.path.join(data, "postgresql.conf"), "a") as f:
        f.write("shared_preload_libraries = 'wa_notify'\nwa_notify.database = 'postgres'\n"
                "listen_addresses = ''\nunix_socket_directories = '%s'\nport = %s\n"
                "shared_buffers = 256MB\ntrack_functions = 'all'\n" % (sock, PORT))
    run(os.path.join(bindir, "pg_ctl"), "-D", data, "-l", os.path.join(work, "log"), "-w", "start")
    log = os.path.join(work, "requests.jsonl")
    portfile = os.path.join(work, "mockport")
    mock = subprocess.Popen(["/usr/bin/python3", mock_py, "--log", log, "--port-file", portfile])
    while not os.path.exists(portfile):
        time.sleep(0.02)
    mport = int(open(portfile).read())
    control(mport, {"throughput_level": a.level, "rules": {"*": {"delay": a.latency}}})
    psql("CREATE EXTENSION wa_notify")
    caps = ""
    if a.in_flight is not None:
        caps += ", max_in_flight => %d" % a.in_flight
    if a.max_rate is not None:
        caps += ", max_rate => %g, min_delay => 0, max_delay => 0, recipient_gap => 0, max_per_batch => 100000" % a.max_rate
    psql("SELECT wa_notify.configure(access_token => 'EAAbench-token-0000000000', phone_number_id => '%s', "
         "api_base_url => 'http://127.0.0.1:%d', enabled => false%s)" % (PNID["default"], mport, caps))
    for s in SENDERS[1:]:
        psql("SELECT wa_notify.configure_sender('%s', phone_number_id => '%s', "
             "access_token => 'EAAbench-token-%s-00000000')" % (s, PNID[s], s))
    wait_for("SELECT worker_activity LIKE 'paused: master switch%' FROM wa_notify.state")
    wait_for("SELECT bool_and(throughput_level = '%s') FROM wa_notify.senders" % a.level)
    pid = psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'")
    lpid = psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'wa_notify launcher'")
    rss0, lrss0 = rss(pid), rss(lpid)
    print("%d senders x %d messages, mock latency %.0f ms, throughput level %s, max_in_flight %s, max_rate %s; "
          "worker pid %s, RssAnon %d kB; launcher RssAnon %d kB"
          % (len(SENDERS), a.messages, a.latency * 1000, a.level,
             "auto" if a.in_flight is None else a.in_flight,
             "default" if a.max_rate is None else "%g" % a.max_rate, pid, rss0, lrss0))

    alone = {}
    for s in SENDERS:
        posts, wall, st, cpu = batch("A" + s, [s])
        r, _ = rates(posts)
        alone[s] = r[s][1]
        print("alone    %-8s %5d POSTs, %7.0f msg/s (wall %.2f s; %s); worker CPU %.0f us/message"
              % (s, r[s][0], r[s][1], wall, st, cpu * 1e6 / max(len(posts), 1)))

    psql("SELECT pg_stat_reset()")
    posts, wall, st, cpu = batch("ALL", SENDERS)
    r, agg = rates(posts)
    print("together %d senders: %d POSTs, aggregate %.0f msg/s at the mock, %.0f msg/s wall (%.2f s; %s); "
          "worker CPU %.0f us/message (%.0f%% of a core)"
          % (len(SENDERS), len(posts), agg, len(posts) / wall, wall, st,
             cpu * 1e6 / max(len(posts), 1), 100 * cpu / wall))
    # where the worker's SQL time went (track_functions), per message
    print(psql("SELECT string_agg(format('%s: %s calls, %s us/message', funcname, calls, "
               "round(total_time * 1000 / " + str(max(len(posts), 1)) + ")), '; ' ORDER BY total_time DESC) "
               "FROM (SELECT * FROM pg_stat_user_functions ORDER BY total_time DESC LIMIT 6) f"))
    worst = 1e9
    for s in SENDERS:
        ratio = r[s][1] / alone[s] if alone[s] else 0
        worst = min(worst, ratio)
        print("together %-8s %5d POSTs, %7.0f msg/s = %.2f x alone" % (s, r[s][0], r[s][1], ratio))
    rss1 = rss(pid)
    print("worst sender share: %.2f x alone (target >= 0.90); aggregate %.0f msg/s (target >= 3000)"
          % (worst, agg))
    print("worker RssAnon after %d messages: %d kB (%+d kB); launcher %d kB"
          % (len(SENDERS) * a.messages * 2, rss1, rss1 - rss0, rss(lpid)))
finally:
    if mock:
        mock.kill()
    subprocess.run([os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "fast", "stop"], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
