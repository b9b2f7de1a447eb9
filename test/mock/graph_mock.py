#!/usr/bin/python3
"""Mock of the Meta Graph API (WhatsApp Cloud API) for wa_notify's tests and
benchmarks.  Standard library only; listens on 127.0.0.1 only.

    graph_mock.py --log requests.jsonl --port-file port [--port 0]

Every request is appended to the JSONL log as
{"t": arrival epoch seconds, "method", "path", "query", "headers": {lower-case
name: value}, "body": raw body text}.

Answers:
  POST /{version}/{phone_number_id}/messages
       success: {"messaging_product":"whatsapp","contacts":[{"input":to,
       "wa_id":...}],"messages":[{"id":"wamid.MOCK<n>"}]}
  GET  /{version}/{phone_number_id}     phone-number fields, with
       "throughput": {"level": "STANDARD"} (Meta's levels: STANDARD, 80 msg/s;
       HIGH, 1,000 msg/s -- developers.facebook.com/documentation/
       business-messaging/whatsapp/throughput)
  GET  /{version}/{waba_id}/message_templates   templates, paged (limit, after)

Control (not logged):
  POST /_control   JSON, merged into the configuration:
     {"rules": {"<phone or *>": RULE}, "phone_info": {...}, "templates": [...],
      "token": "expected bearer token or null", "throughput_level": "HIGH",
      "reset": true}
     throughput_level sets the level the phone-number GET answers (over
     phone_info's), null: as phone_info or the default says.
     RULE = {"code": 131026, "http": 400, "details": "...", "message": "...",
             "delay": 0.1, "timeout": true, "garbage": true, "wa_id": "...",
             "user_id": "BR.13491208655302741918" (the recipient's business-scoped
             user ID: contacts[0].user_id of the answer, as Meta's 2026 send
             responses carry it),
             "count": n (apply n times, then the rule is dropped)}
     A rule for a phone wins over "*".  {"rules": {"5511...": null}} removes one.
     {"sender_rules": {"<phone_number_id>": RULE}}: the same for every POST to
       /{version}/<phone_number_id>/messages (before the phone rules): errors
       injected into one sender only; null removes one.
     {"tokens": {"<phone_number_id>": "bearer token"}}: the token each number
       expects (a wrong one: 401, code 190), on top of "token".
  GET  /_stats     {"requests": n}

Status webhooks (as Meta sends them for every message it accepts):
  {"webhook": {"url": "http://127.0.0.1:PORT/hook", "secret": "app secret",
               "delay": 0.2, "retry_for": 60}}   ({"webhook": null}: off)
  after each accepted POST /messages (a 200 with a wamid), a signed 'sent'
  status for that wamid, recipient_id = to, echoing the request's
  biz_opaque_callback_data, is POSTed to url (X-Hub-Signature-256), "delay"
  s after the answer, and again every 0.3 s while the answer is not a 200
  (Meta retries), for "retry_for" s at most.  Every attempt is logged as
  {"t", "method": "WEBHOOK", "path": url, "status": HTTP code (0: no
  answer), "wamid", "to"}.
"""
import argparse
import asyncio
import hashlib
import hmac
import json
import os
import resource
import sys
import time
import urllib.error
import urllib.request

CONFIG = {"rules": {}, "sender_rules": {}, "tokens": {}, "phone_info": None, "templates": [],
          "token": None, "throughput_level": None, "webhook": None}
STATE = {"n": 0, "wamid": 0}
LOG = None

DEFAULT_PHONE_INFO = {
    "display_phone_number": "+55 11 4000-0000",
    "verified_name": "Loja Teste",
    "quality_rating": "GREEN",
    "whatsapp_business_manager_messaging_limit": "TIER_2K",
    "throughput": {"level": "STANDARD"},
}


def graph_error(code, message=None, details=None, etype="OAuthException"):
    return {"error": {
        "message": message or "(#%d) mock error %d" % (code, code),
        "type": etype,
        "code": code,
        "error_data": {"messaging_product": "whatsapp",
                       "details": details or "mock details for %d" % code},
        "fbtrace_id": "Amock%06d" % STATE["n"]}}


def pick_rule(phone, rules=None):
    rules = CONFIG["rules"] if rules is None else rules
    key = phone if phone in rules else ("*" if "*" in rules and phone != "GET" else None)
    if key is None:
        return None
    rule = rules[key]
    if "count" in rule:
        rule["count"] -= 1
        if rule["count"] <= 0:
            del rules[key]
    return rule


def respond(status, obj=None, raw=None):
    if raw is None:
        raw = json.dumps(obj).encode()
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
              404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error",
              502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Status")
    head = ("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (status, reason, len(raw))).encode()
    return head + raw


def handle(method, target, headers, body):
    """Returns (delay, response bytes or None for 'never answer')."""
    path, _, query = target.partition("?")
    if path == "/_control":
        cfg = json.loads(body or b"{}")
        if cfg.get("reset"):
            CONFIG.update({"rules": {}, "sender_rules": {}, "tokens": {}, "phone_info": None,
                           "templates": [], "token": None, "throughput_level": None, "webhook": None})
        for table in ("rules", "sender_rules", "tokens"):
            for k, v in cfg.get(table, {}).items():
                if v is None:
                    CONFIG[table].pop(k, None)
                else:
                    CONFIG[table][k] = v
        for k in ("phone_info", "templates", "token", "throughput_level", "webhook"):
            if k in cfg:
                CONFIG[k] = cfg[k]
        return 0, respond(200, {"ok": True})
    if path == "/_stats":
        return 0, respond(200, {"requests": STATE["n"]})

    STATE["n"] += 1
    rec = {"t": time.time(), "method": method, "path": path, "query": query,
           "headers": headers, "body": body.decode("utf-8", "replace")}
    LOG.write(json.dumps(rec) + "\n")
    LOG.flush()

    if CONFIG["token"] is not None and headers.get("authorization") != "Bearer " + CONFIG["token"]:
        return 0, respond(401, graph_error(190, "Error validating access token: Session has expired",
                                           "access token expired"))
    parts = [p for p in path.split("/") if p]
    expected = CONFIG["tokens"].get(parts[1]) if len(parts) >= 2 else None
    if expected is not None and headers.get("authorization") != "Bearer " + expected:
        return 0, respond(401, graph_error(190, "Error validating access token: Session has expired",
                                           "access token expired"))
    if method == "POST" and len(parts) == 3 and parts[2] == "messages":
        try:
            req = json.loads(body)
            to = req.get("to", "")
        except Exception:
            return 0, respond(400, graph_error(100, "(#100) Invalid parameter", "body is not JSON"))
        rule = (pick_rule(parts[1], CONFIG["sender_rules"]) if parts[1] in CONFIG["sender_rules"]
                else pick_rule(to))
        delay = 0
        if rule:
            delay = rule.get("delay", 0)
            if rule.get("timeout"):
                return delay, None
            if rule.get("garbage"):
                return delay, respond(rule.get("http", 200), raw=b"<html>oops, not json")
            if "code" in rule:
                return delay, respond(rule.get("http", 400),
                                      graph_error(rule["code"], rule.get("message"), rule.get("details")))
            if "http" in rule and rule["http"] != 200:
                return delay, respond(rule["http"], raw=rule.get("raw", "").encode())
        STATE["wamid"] += 1
        if CONFIG["webhook"]:
            schedule_status(CONFIG["webhook"], "wamid.MOCK%08d" % STATE["wamid"], to,
                            req.get("biz_opaque_callback_data"), delay, parts[1])
        wa_id = (rule or {}).get("wa_id", to)
        contact = {"input": to, "wa_id": wa_id}
        if (rule or {}).get("user_id"):
            contact["user_id"] = rule["user_id"]
        return delay, respond(200, {
            "messaging_product": "whatsapp",
            "contacts": [contact],
            "messages": [{"id": "wamid.MOCK%08d" % STATE["wamid"]}]})
    if method == "GET" and len(parts) == 3 and parts[2] == "message_templates":
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        limit = int(params.get("limit", "25"))
        start = int(params.get("after", "0") or 0)
        tpl = CONFIG["templates"]
        page = tpl[start:start + limit]
        out = {"data": page, "paging": {"cursors": {"before": str(start), "after": str(start + limit)}}}
        if start + limit < len(tpl):
            out["paging"]["next"] = "http://127.0.0.1/ignored?after=%d" % (start + limit)
        return 0, respond(200, out)
    if method == "GET" and len(parts) == 2:
        rule = pick_rule("GET")
        if rule:
            if rule.get("timeout"):
                return rule.get("delay", 0), None
            if rule.get("garbage"):
                return 0, respond(200, raw=b"garbage")
            return 0, respond(rule.get("http", 400), graph_error(rule.get("code", 1)))
        info = dict(CONFIG["phone_info"] or DEFAULT_PHONE_INFO)
        info["id"] = parts[1]
        if CONFIG["throughput_level"] is not None:
            info["throughput"] = {"level": CONFIG["throughput_level"]}
        return 0, respond(200, info)
    return 0, respond(404, graph_error(100, "Unknown path", "no such endpoint"))


def post_webhook(url, secret, body):
    """One signed POST (in a thread); the HTTP status, 0 when none came."""
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "X-Hub-Signature-256": sig})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception:
        return 0


async def send_status(hook, wamid, to, callback_data, wait, pnid):
    await asyncio.sleep(wait + hook.get("delay", 0.2))
    status = {"id": wamid, "status": "sent", "timestamp": str(int(time.time())),
              "recipient_id": to,
              "pricing": {"billable": True, "pricing_model": "PMP", "category": "utility"}}
    if callback_data is not None:
        status["biz_opaque_callback_data"] = callback_data
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{
        "id": hook.get("waba", "102290129340398"), "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": pnid},
            "statuses": [status]}}]}]}).encode()
    deadline = time.time() + hook.get("retry_for", 60)
    loop = asyncio.get_running_loop()
    while True:
        code = await loop.run_in_executor(None, post_webhook, hook["url"], hook["secret"], body)
        LOG.write(json.dumps({"t": time.time(), "method": "WEBHOOK", "path": hook["url"],
                              "query": "", "headers": {}, "body": "", "status": code,
                              "wamid": wamid, "to": to}) + "\n")
        LOG.flush()
        if code == 200 or time.time() > deadline:
            return
        await asyncio.sleep(0.3)


def schedule_status(hook, wamid, to, callback_data, wait, pnid):
    asyncio.ensure_future(send_status(dict(hook), wamid, to, callback_data, wait, pnid))


class GraphProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""
        self.queue = asyncio.get_event_loop().create_future()
        self.queue.set_result(None)

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1").split("\r\n")
            try:
                method, target, _ = head[0].split(" ", 2)
            except ValueError:
                self.transport.close()
                return
            headers = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0"))
            if len(self.buf) < end + 4 + n:
                return
            body = self.buf[end + 4:end + 4 + n]
            self.buf = self.buf[end + 4 + n:]
            delay, resp = handle(method, target, headers, body)
            if delay == 0 and resp is not None and self.queue.done():
                self.transport.write(resp)
            else:
                prev = self.queue
                self.queue = asyncio.ensure_future(self.later(prev, delay, resp))

    async def later(self, prev, delay, resp):
        await prev
        if resp is None:
            return          # never answer; the connection stays open
        if delay:
            await asyncio.sleep(delay)
        if not self.transport.is_closing():
            self.transport.write(resp)


async def main():
    global LOG
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log", required=True)
    ap.add_argument("--port-file", required=True)
    a = ap.parse_args()
    LOG = open(a.log, "a", buffering=1 << 16)
    # one descriptor per connection: a benchmark's thousand requests in
    # flight need more than the usual soft limit of 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(GraphProtocol, "127.0.0.1", a.port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, a.port_file)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
