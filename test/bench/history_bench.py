#!/usr/bin/python3
"""History benchmark (issue 14, "Cost that does not grow with history"; not
run by CI).  One throw-away cluster with two databases, each with its own
worker: "empty", and "postgres" with ROWS messages of history (default 10
million, generated in SQL, spread over 13 months, the oldest month holding
3/10 of them: 3 million).  Both are measured in alternating rounds (empty,
history, history, empty, ...: a busy machine's drift falls on both alike),
each time:

  - dispatch msg/s at 0 ms (the mock Graph API, zero delays, as
    dispatch_bench.py);
  - single-status webhooks/s (webhook_receive(), pgbench, signed payloads, as
    webhook_bench.sh), one first 'delivered' per message just sent;
  - the status card and counts() for today: median of 20 runs, ms;

and then retention of the oldest month (maintain() with log_retention_days
set so that exactly that month is past it): its time, and what concurrent
checkouts (INSERTs into a watched orders table, pgbench, 2 clients) saw
meanwhile: their longest latency, and the lock waits PostgreSQL logged
(log_lock_waits, deadlock_timeout = 10 ms).

The RESULT line gives the medians of the rounds' ratios.  Targets: dispatch
and webhooks within 10% of empty; status card and counts()
under 50 ms; the longest lock wait of a checkout under 100 ms.

Run as root or postgres:
    test/bench/history_bench.sh [--rows 10000000] [--messages 20000]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--rows", type=int, default=int(os.environ.get("ROWS", 10_000_000)))
ap.add_argument("--messages", type=int, default=20000)
ap.add_argument("--port", type=int, default=54988)
ap.add_argument("--rounds", type=int, default=3, help="measurements of each database (alternating)")
ap.add_argument("--explain", action="store_true", help="print the status card's plan after each round")
ap.add_argument("--in-flight", type=int, default=200,
                help="max_in_flight (fixed, as dispatch_bench.py: an auto size would cap the mock's STANDARD number at 80 msg/s)")
ap.add_argument("--keep", action="store_true", help="leave the cluster running after the load (for EXPLAIN)")
a = ap.parse_args()

pg_config = os.environ.get("PG_CONFIG", "/usr/lib/postgresql/15/bin/pg_config")
bindir = subprocess.check_output([pg_config, "--bindir"], text=True).strip()
here = os.path.dirname(os.path.abspath(__file__))
mock_py = os.path.join(here, "..", "mock", "graph_mock.py")
work = tempfile.mkdtemp(prefix="wa_history_bench.", dir="/var/tmp")
data = os.path.join(work, "data")
sock = work
PORT = str(a.port)
PNID = "106540352242922"
SECRET = "bench-app-secret"


def run(*cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise SystemExit("failed: %s\n%s" % (" ".join(cmd)[:300], p.stderr))
    return p.stdout


DB = "postgres"     # the database psql() and pgbench() talk to


def psql(sql, db=None):
    return run(os.path.join(bindir, "psql"), "-X", "-q", "-A", "-t", "-h", sock, "-p", PORT,
               "-d", db or DB, "-v", "ON_ERROR_STOP=1", "-c", sql).strip()


def wait_for(sql, timeout=1800):
    dl = time.time() + timeout
    while time.time() < dl:
        if psql(sql) == "t":
            return
        time.sleep(0.05)
    raise SystemExit("timed out: " + sql)


def setting(name, value):
    psql("UPDATE wa_notify.setting SET value = '%s', updated_at = clock_timestamp() WHERE name = '%s'" % (value, name))


def pgbench(script, *args):
    path = os.path.join(work, "script.sql")
    with open(path, "w") as f:
        f.write(script)
    out = run(os.path.join(bindir, "pgbench"), "-n", "-h", sock, "-p", PORT, "-f", path, *args, DB, cwd=work)
    return float([l for l in out.splitlines() if l.startswith("tps")][0].split()[2])


SETUP = r"""
CREATE EXTENSION wa_notify;
CREATE EXTENSION pgcrypto;
CREATE TABLE orders (id bigserial PRIMARY KEY, phone text NOT NULL, total numeric(10,2));
GRANT SELECT ON orders TO wa_notify_context;
SELECT wa_notify.watch('order_placed', 'orders', 'id',
    $$SELECT phone, id::text AS order_number, total FROM orders WHERE id = $1::bigint$$);
-- a single-status webhook for a message, signed (webhook_bench.sh's shape)
CREATE FUNCTION bench_status(wamid text, phone text) RETURNS bytea LANGUAGE sql AS $f$
  SELECT convert_to(jsonb_build_object('object', 'whatsapp_business_account', 'entry', jsonb_build_array(
    jsonb_build_object('id', '102290129340398', 'changes', jsonb_build_array(jsonb_build_object(
      'field', 'messages', 'value', jsonb_build_object('messaging_product', 'whatsapp',
        'metadata', jsonb_build_object('display_phone_number', '15550783881', 'phone_number_id', '%(pnid)s'),
        'statuses', jsonb_build_array(jsonb_build_object('id', wamid, 'status', 'delivered',
           'timestamp', extract(epoch FROM now())::bigint::text, 'recipient_id', phone,
           'pricing', jsonb_build_object('billable', true, 'pricing_model', 'PMP', 'category', 'utility')))))))))::text, 'UTF8')
$f$;
CREATE TABLE bench_payload (k bigint PRIMARY KEY, body bytea, sig text);
CREATE SEQUENCE bench_k;
-- median of n runs of a query, ms
CREATE FUNCTION bench_ms(q text, n int) RETURNS numeric LANGUAGE plpgsql AS $f$
DECLARE t timestamptz; ms numeric[] := '{}';
BEGIN
    FOR i IN 1..n LOOP
        t := clock_timestamp();
        EXECUTE q;
        ms := ms || (extract(epoch FROM clock_timestamp() - t) * 1000)::numeric;
    END LOOP;
    RETURN (SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY x)::numeric, 2) FROM unnest(ms) x);
END $f$;
""" % {"pnid": PNID}

# The history: 13 months back from now, the oldest calendar month holding
# 3/10 of the rows, the time since (today included) the rest evenly; a message
# created d ago was sent then, delivered or read (a few failed), anonymized
# when older than 90 days, archived when older than 8 (as maintain() leaves
# them), live otherwise; claimed when sent, as every sent message is (a
# history without claimed_at left message_phone_claimed empty when ANALYZE
# ran, and the planner then took that index, free by its statistics, for
# the card's 'sending' count: 40,000 heap visits for no row).  The archive's partitions are made by maintain()'s
# own function.
LOAD = r"""
SELECT wa_notify._archive_partition_for(now() - m * interval '1 month') FROM generate_series(0, 12) m;
-- slice 12: the oldest calendar month (what retention drops); slices 0-11:
-- the time from its end to now, in twelve equal spans (the same rows per
-- day throughout, today included, whatever day of the month this is)
CREATE TABLE bench_months AS
SELECT 12 AS m, wa_notify._month_start(now() - interval '12 months') AS lo,
       wa_notify._month_start(now() - interval '11 months') AS hi, %(big)s AS n
UNION ALL
SELECT m, e + (now() - e) * (11 - m) / 12.0, e + (now() - e) * (12 - m) / 12.0, %(rest)s
  FROM generate_series(0, 11) m, (SELECT wa_notify._month_start(now() - interval '11 months') AS e) x;
"""


def load_history(rows):
    big = rows * 3 // 10
    rest = (rows - big) // 12
    psql(LOAD % {"big": big, "rest": rest})
    months = psql("SELECT string_agg(m || ':' || n, ' ' ORDER BY m) FROM bench_months")
    cols = ("id, event, order_key, phone, params, status, wamid, wa_id, attempts, created_at, sent_at, "
            "delivered_at, read_at, failed_at, http_status, updated_at, pricing_category, pricing_type, billable, "
            "anonymized_at, sender, claimed_at")
    gen = ("SELECT nextval('wa_notify.message_id_seq'), 'order_placed', 'H' || g || '-' || mo.m, "
           " CASE WHEN t < now() - interval '90 days' THEN '+55 11 9••••-••' || lpad((g %% 100)::text, 2, '0') || ' #' || md5(g::text)::varchar(16)"
           "      ELSE (5511900000000 + g %% 200000)::text END, "
           " CASE WHEN t < now() - interval '90 days' THEN jsonb_build_object('order_number', g::text)"
           "      ELSE jsonb_build_object('customer_name', 'Cliente ' || g, 'order_number', g::text, 'total', '99,90') END, "
           " CASE WHEN g %% 50 = 0 THEN 'failed' WHEN g %% 3 = 0 THEN 'delivered' ELSE 'read' END, "
           " CASE WHEN t >= now() - interval '90 days' THEN 'wamid.H' || g || '-' || mo.m END, NULL, 1, t, t, "
           " CASE WHEN g %% 50 <> 0 THEN t END, CASE WHEN g %% 50 <> 0 AND g %% 3 <> 0 THEN t END, "
           " CASE WHEN g %% 50 = 0 THEN t END, 200, t, 'utility', 'regular', g %% 50 <> 0, "
           " CASE WHEN t < now() - interval '90 days' THEN t + interval '90 days' END, 'default', t "
           "FROM bench_months mo, generate_series(1, mo.n) g, "
           "     LATERAL (SELECT mo.lo + (mo.hi - mo.lo) * (g::float8 / (mo.n + 1)) AS t) x WHERE mo.m = %d AND %s")
    t0 = time.time()
    for m in range(12, -1, -1):
        psql("INSERT INTO wa_notify.message_archive (%s) %s" % (cols, gen % (m, "t < now() - interval '8 days'")))
        psql("INSERT INTO wa_notify.message (%s) %s" % (cols, gen % (m, "t >= now() - interval '8 days'")))
    print("loaded %d rows in %.0f s (rows per month, months back: %s)" % (rows, time.time() - t0, months))
    t0 = time.time()
    psql("VACUUM ANALYZE wa_notify.message")
    psql("VACUUM ANALYZE wa_notify.message_archive")
    psql("CHECKPOINT")
    print("VACUUM ANALYZE, CHECKPOINT: %.0f s; live rows %s, archived %s, size %s" % (
        time.time() - t0, psql("SELECT count(*) FROM wa_notify.message"),
        psql("SELECT count(*) FROM wa_notify.message_archive"),
        psql("SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c "
             "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'wa_notify' AND c.relkind = 'r'")))


def measure(label, db, rnd):
    global DB
    DB = db
    tag = "D-%s-%d" % (db, rnd)
    psql("INSERT INTO wa_notify.message (event, order_key, phone, params) "
         "SELECT 'order_placed', '%s-' || g, (5511970000000 + g)::text, "
         "jsonb_build_object('customer_name', 'Cliente ' || g, 'order_number', g::text, 'total', '99,90') "
         "FROM generate_series(1, %d) g" % (tag, a.messages))
    pid = psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'wa_notify worker' "
               "AND datname = current_database()")
    cpu0 = worker_cpu(pid)
    t0 = time.time()
    setting("enabled", "true")
    # (through the two indexes that hold the waiting messages: a count over
    # the live table twenty times a second, parallel on a table of 187,000
    # rows, took the CPU the history's worker was measured on)
    wait_for("SELECT NOT EXISTS (SELECT 1 FROM wa_notify.message WHERE queued) "
             "AND NOT EXISTS (SELECT 1 FROM wa_notify._message_unconfirmed WHERE status = 'sending')")
    dispatch = a.messages / (time.time() - t0)
    cpu_us = (worker_cpu(pid) - cpu0) * 1e6 / a.messages
    setting("enabled", "false")
    wait_for("SELECT worker_activity LIKE 'paused: master switch%' FROM wa_notify.state")
    psql("TRUNCATE bench_payload; SELECT setval('bench_k', 1, false);"
         "INSERT INTO bench_payload SELECT row_number() OVER (ORDER BY random()), b, "
         "'sha256=' || encode(hmac(b, '%s', 'sha256'), 'hex') "
         "FROM wa_notify.message m, LATERAL bench_status(m.wamid, m.phone) b "
         "WHERE m.order_key LIKE '%s-%%' AND m.status = 'sent'" % (SECRET, tag))
    psql("VACUUM ANALYZE bench_payload")
    n = int(psql("SELECT count(*) FROM bench_payload"))
    webhooks = pgbench("SELECT wa_notify.webhook_receive(body, sig) FROM bench_payload WHERE k = (SELECT nextval('bench_k'));\n",
                       "-c", "2", "-j", "2", "-t", str(n // 2))
    applied = psql("SELECT count(*) FROM wa_notify.message WHERE order_key LIKE '%s-%%' AND status = 'delivered'" % tag)
    tally = psql("SELECT count(*) || ' rows (' || count(*) FILTER (WHERE hour >= now() - interval '1 day') "
                 "|| ' of the last day), ' || pg_size_pretty(pg_relation_size('wa_notify.message_tally')) "
                 "FROM wa_notify.message_tally")
    if a.explain:
        print(psql("EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM wa_notify.status"))
    status = float(psql("SELECT bench_ms('SELECT * FROM wa_notify.status', 20)"))
    counts = float(psql("SELECT bench_ms('SELECT * FROM wa_notify.counts()', 20)"))
    print("%-14s dispatch %6.0f msg/s (worker CPU %3.0f us/msg) | webhooks %6.0f/s (%s of %d applied) | status card %7.2f ms | counts() %7.2f ms"
          " | tally %s" % (label, dispatch, cpu_us, webhooks, applied, n, status, counts, tally))
    return {"dispatch": dispatch, "cpu": cpu_us, "webhooks": webhooks, "status": status, "counts": counts}


def worker_cpu(pid):
    """CPU seconds the process has used (user + system)"""
    f = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def checkout_latencies(t0, t1):
    """(during [t0, t1], otherwise) latencies in ms of the pgbench checkouts"""
    lat_in, lat_out = [], []
    for fn in os.listdir(work):
        if fn.startswith("pgbench_log."):
            for line in open(os.path.join(work, fn)):
                f = line.split()
                end = int(f[4]) + int(f[5]) / 1e6
                us = int(f[2])
                (lat_in if end - us / 1e6 <= t1 and end >= t0 else lat_out).append(us / 1000)
    return lat_in, lat_out


def retention():
    days = psql("SELECT floor(extract(epoch FROM now() - hi) / 86400)::int FROM wa_notify._archive_partitions() "
                "WHERE lo = wa_notify._month_start(now() - interval '12 months')")
    oldest = psql("SELECT part || ' ' || (SELECT count(*) FROM wa_notify.message_archive a "
                  "WHERE a.created_at >= p.lo AND a.created_at < p.hi) FROM wa_notify._archive_partitions() p "
                  "ORDER BY lo LIMIT 2")
    print("retention: log_retention_days = %s; oldest partitions (rows): %s" % (days, oldest.replace("\n", ", ")))
    setting("enabled", "true")      # checkouts are captured, staged and sent meanwhile
    log_size = os.path.getsize(os.path.join(work, "log"))
    result = {}

    def checkouts():
        result["tps"] = pgbench("INSERT INTO orders (phone, total) VALUES ('(11) 98765-4321', 10);\n",
                                "-c", "2", "-j", "2", "-T", "40", "-l")
    th = threading.Thread(target=checkouts)
    th.start()
    time.sleep(4)
    setting("log_retention_days", days)
    # 1. maintain() on demand, from a session, while the worker stages the
    #    checkouts' captures: it waits for no one (its DDL at most 50 ms)
    t0 = time.time()
    r = json.loads(psql("SELECT wa_notify.maintain()"))
    t1 = time.time()
    print("retention, maintain() from a session under load: %.2f s: dropped %s, deferred %s" % (
        t1 - t0, r["dropped_partitions"], r["deferred"]))
    # 2. the worker's own run (it runs maintain() when it starts: restart it),
    #    between its cycles
    before = psql("SELECT maintained_at FROM wa_notify.state")
    psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'wa_notify worker' "
         "AND datname = current_database()")
    wait_for("SELECT maintained_at > '%s' FROM wa_notify.state" % before, timeout=120)
    r = json.loads(psql("SELECT last_maintain FROM wa_notify.state"))
    t3 = float(psql("SELECT extract(epoch FROM maintained_at) FROM wa_notify.state"))
    t2 = t3 - r["seconds"]
    th.join()
    lat1, _ = checkout_latencies(t0, t1)
    lat2, lat_out = checkout_latencies(t2, t3)
    with open(os.path.join(work, "log")) as f:
        f.seek(log_size)
        waits = [l.strip() for l in f if "still waiting for" in l]
    print("retention, the worker's maintain(): %.2f s: dropped %s, deferred %s, moved %s, anonymized %s" % (
        r["seconds"], r["dropped_partitions"], r["deferred"], r["moved"], r["anonymized"]))
    print("checkouts: %.0f tps; during the session's maintain() %d, longest %.1f ms; during the worker's %d, "
          "longest %.1f ms; otherwise longest %.1f ms, median %.1f ms"
          % (result["tps"], len(lat1), max(lat1 or [0]), len(lat2), max(lat2 or [0]), max(lat_out or [0]),
             statistics.median(lat_out or [0])))
    pids = psql("SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE backend_type = 'wa_notify worker' "
                "AND datname = current_database()")
    print("lock waits over deadlock_timeout (10 ms) logged meanwhile: %d (the worker now: pid %s)%s" % (
        len(waits), pids, "".join("\n    " + w for w in waits[:10])))
    return r["seconds"], max(lat1 + lat2 or [0])


mock = None
try:
    run(os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-N")
    with open(os.path.join(data, "postgresql.conf"), "a") as f:
        f.write("shared_preload_libraries = 'wa_notify'\n"
                "listen_addresses = ''\nunix_socket_directories = '%s'\nport = %s\n"
                "shared_buffers = 512MB\nsynchronous_commit = on\nfsync = on\nmax_wal_size = 8GB\n"
                "checkpoint_timeout = 30min\nlog_lock_waits = on\ndeadlock_timeout = 10ms\n" % (sock, PORT))
    run(os.path.join(bindir, "pg_ctl"), "-D", data, "-l", os.path.join(work, "log"), "-w", "start")
    portfile = os.path.join(work, "mockport")
    mock = subprocess.Popen(["/usr/bin/python3", mock_py, "--log", "/dev/null", "--port-file", portfile])
    while not os.path.exists(portfile):
        time.sleep(0.02)
    mport = int(open(portfile).read())
    psql("CREATE DATABASE empty")
    for DB in ("empty", "postgres"):
        psql(SETUP)
        psql("UPDATE wa_notify.setting SET updated_at = now(), value = CASE name "
             "WHEN 'access_token' THEN 'EAAbench' WHEN 'phone_number_id' THEN '%s' WHEN 'app_secret' THEN '%s' "
             "WHEN 'api_base_url' THEN 'http://127.0.0.1:%d' WHEN 'min_delay' THEN '0' "
             "WHEN 'max_delay' THEN '0' WHEN 'max_rate' THEN '0' WHEN 'recipient_gap' THEN '0' "
             "WHEN 'max_per_batch' THEN '10000000' WHEN 'enabled' THEN 'false' WHEN 'log_retention_days' THEN '0' "
             "WHEN 'max_in_flight' THEN '%d' END "
             "WHERE name IN ('access_token','phone_number_id','app_secret','api_base_url','min_delay','max_delay',"
             "'max_rate','recipient_gap','max_per_batch','enabled','log_retention_days','max_in_flight')"
             % (PNID, SECRET, mport, a.in_flight))
        wait_for("SELECT worker_activity LIKE 'paused: master switch%' FROM wa_notify.state")
    DB = "postgres"
    load_history(a.rows)
    if a.keep:
        print("kept: psql -h %s -p %s postgres (empty: database empty); pg_ctl -D %s stop; mock pid %d"
              % (sock, PORT, data, mock.pid))
        os._exit(0)
    hist = "%dM history" % (a.rows // 1_000_000) if a.rows >= 1_000_000 else "%dk history" % (a.rows // 1000)
    ratios = {"dispatch": [], "cpu": [], "webhooks": [], "status": [], "counts": []}
    for rnd in range(a.rounds):
        order = [("empty", "empty"), (hist, "postgres")]
        if rnd % 2:
            order.reverse()
        m = {db: measure(label, db, rnd) for label, db in order}
        for k in ratios:
            ratios[k].append(m["postgres"][k] / m["empty"][k] if k in ("dispatch", "cpu", "webhooks")
                             else m["postgres"][k])
    med = {k: statistics.median(v) for k, v in ratios.items()}
    print("RESULT history/empty, median of %d rounds: dispatch %.2f (worker CPU per message %.2f), webhooks %.2f "
          "(target >= 0.90); status card %.1f ms, counts() %.1f ms (target < 50 ms)"
          % (a.rounds, med["dispatch"], med["cpu"], med["webhooks"], med["status"], med["counts"]))
    DB = "postgres"
    secs, longest = retention()
    print("RESULT retention of the oldest month: %.2f s; longest checkout during it %.1f ms (target: lock wait < 100 ms)"
          % (secs, longest))
finally:
    if mock:
        mock.kill()
    subprocess.run([os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "fast", "stop"], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
